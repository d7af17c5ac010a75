// Package atomicfile replaces files so that a reader, a crash or a power
// loss sees either the old content or the new one, never a mix or an
// empty file.
//
// A write goes to a temporary file with a unique name in the same
// directory as the target (so the rename cannot cross a file system and
// two writers never share a temporary file). The data is written and
// fsynced, the mode is set exactly as asked (the umask does not apply;
// KeepMode keeps the replaced file's),
// the file is renamed over the target and the directory is fsynced, so
// that the rename itself is on disk when the call returns. On any failure
// the temporary file is removed and the target is left as it was.
//
// WriteFileNoSync skips the fsyncs, for files that describe only what a
// power loss ends anyway (processes, cgroups) or that are made durable
// later, together, when it turns out they must be (Sync); it keeps the
// rest.
//
// Temporary files are named ".NAME.tmp-RANDOM": a process killed between
// the create and the rename can leave one behind; IsTemp tells such
// leftovers from real entries so that a directory scan can skip or remove
// them.
package atomicfile
