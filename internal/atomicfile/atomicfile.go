package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// tempInfix sits between the target's name and the random suffix of a
// temporary file's name.
const tempInfix = ".tmp-"

// File is a pending replacement of a file: write to it, then Commit.
// Close without Commit abandons it and removes the temporary file; Close
// after Commit does nothing, so `defer f.Close()` is always right.
type File struct {
	f      *os.File
	path   string
	perm   fs.FileMode
	nosync bool
	done   bool
	failed error
}

// KeepMode, as perm, keeps the mode of the file being replaced (0600 for
// a new one).
const KeepMode fs.FileMode = 0

// Create starts the replacement of path, whose mode will be perm (or that
// of the file it replaces, with KeepMode).
func Create(path string, perm fs.FileMode) (*File, error) {
	dir, base := filepath.Split(path)
	if base == "" {
		return nil, fmt.Errorf("atomic write %s: not a file name", path)
	}
	if perm == KeepMode {
		perm = 0o600
		if fi, err := os.Stat(path); err == nil {
			perm = fi.Mode().Perm()
		}
	}
	f, err := os.CreateTemp(dir, "."+base+tempInfix)
	if err != nil {
		return nil, fmt.Errorf("atomic write %s: %w", path, err)
	}
	return &File{f: f, path: path, perm: perm}, nil
}

// Write writes to the temporary file. A failed write makes Commit fail.
func (f *File) Write(p []byte) (int, error) {
	n, err := f.f.Write(p)
	if err != nil && f.failed == nil {
		f.failed = err
	}
	return n, err
}

// Name returns the name of the file that Commit replaces.
func (f *File) Name() string { return f.path }

// Commit makes the written data the content of the target: mode, fsync,
// rename, fsync of the directory. On failure the target is unchanged and
// the temporary file is gone.
func (f *File) Commit() (err error) {
	if f.done {
		return fmt.Errorf("atomic write %s: already committed or closed", f.path)
	}
	f.done = true
	tmp := f.f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
			err = fmt.Errorf("atomic write %s: %w", f.path, err)
		}
	}()
	err = f.failed
	if err == nil {
		err = f.f.Chmod(f.perm)
	}
	if err == nil && !f.nosync {
		err = f.f.Sync()
	}
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err = os.Rename(tmp, f.path); err != nil {
		return err
	}
	if f.nosync {
		return nil
	}
	// The new content is in place; only its durability is in question now,
	// and the temporary name no longer exists: do not remove anything.
	if serr := SyncDir(filepath.Dir(f.path)); serr != nil {
		return fmt.Errorf("atomic write %s: replaced, but %w", f.path, serr)
	}
	return nil
}

// Close abandons an uncommitted replacement and removes its temporary
// file; after Commit it does nothing.
func (f *File) Close() error {
	if f.done {
		return nil
	}
	f.done = true
	err := f.f.Close()
	return errors.Join(err, os.Remove(f.f.Name()))
}

// WriteFile replaces path with data, whose mode will be perm, and
// returns once both are on disk.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return write(path, data, perm, false)
}

// WriteFileNoSync is WriteFile without the two fsyncs: the replacement
// is atomic for readers and against a crash of the process, not against
// a power loss, after which the file may be missing, empty or old. It is
// for state that a reboot makes meaningless anyway (the pid of a running
// process, the path of a cgroup), where the fsyncs would cost the start
// of every pod a few milliseconds each for nothing.
func WriteFileNoSync(path string, data []byte, perm fs.FileMode) error {
	return write(path, data, perm, true)
}

func write(path string, data []byte, perm fs.FileMode, nosync bool) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	f.nosync = nosync
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("atomic write %s: %w", path, err)
	}
	return f.Commit()
}

// Remove removes path and fsyncs its directory, so that the removal is
// on disk when it returns. A missing path is reported as os.Remove does
// (an error wrapping fs.ErrNotExist).
func Remove(path string) error {
	if err := os.Remove(path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs the directory dir, making the creation, renaming or
// removal of its entries durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// Sync makes files that were written without fsync durable: it fsyncs
// each of paths (a file or a directory; a missing one is skipped), then
// each distinct directory holding one, so that their creation or renaming
// is on disk too.
func Sync(paths ...string) error {
	var errs []error
	var dirs []string
	for _, p := range paths {
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err == nil {
			err = f.Sync()
			f.Close()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("sync %s: %w", p, err))
			continue
		}
		if d := filepath.Dir(p); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	for _, d := range dirs {
		errs = append(errs, SyncDir(d))
	}
	return errors.Join(errs...)
}

// IsTemp reports whether name (a base name) is that of a temporary file
// left by an interrupted write.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, tempInfix)
}
