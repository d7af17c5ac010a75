// Package layer extracts a single OCI image layer (a tar stream, possibly
// gzip- or zstd-compressed) into a directory of the image store, treating the
// stream as hostile input.
//
// The package owns exactly one directory per call: Extract recreates the
// layer's entries inside dir and never creates, modifies or removes anything
// outside it. Decompress turns a raw layer blob into the tar stream Extract
// expects. Stacking layers, digest verification and the store layout belong to
// the caller.
//
// # On-disk format
//
// The extracted directory is meant to be used as an overlayfs lowerdir, so OCI
// whiteouts are converted to the overlayfs representation:
//
//   - dir/.wh.NAME becomes a character device 0:0 named dir/NAME;
//   - dir/.wh..wh..opq sets the xattr trusted.overlay.opaque="y" on dir
//     (creating dir if needed);
//   - other names starting with .wh..wh. are AUFS metadata (for example the
//     .wh..wh.plnk hardlink directory); they and everything beneath them are
//     skipped with a debug log record;
//   - a .wh. name used as a parent directory, or a whiteout of "." or "..", is
//     refused with ErrUnsupported / ErrUnsafePath.
//
// Setting trusted.* xattrs requires root (CAP_SYS_ADMIN); creating the
// whiteout devices needs CAP_MKNOD on kernels older than 5.8.
//
// # Security model
//
// Entry names are cleaned lexically; a name whose ".." components climb above
// its start is refused with ErrUnsafePath, even if it is absolute. Absolute
// names are taken relative to dir. The parent directory of every entry is then
// opened with openat2(2) using RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS|
// RESOLVE_NO_XDEV from a descriptor of dir, so symlinks (from this layer or
// already present) resolve as if dir were "/" and can never lead outside it.
// The final component is only ever touched by *at system calls that do not
// follow it: an existing entry is removed before a new non-directory is
// created with O_CREAT|O_EXCL|O_NOFOLLOW, mkdirat, symlinkat, mknodat or linkat
// (without AT_SYMLINK_FOLLOW). Metadata goes through an open descriptor
// (fchown, fchmod, fsetxattr) for files and directories, and otherwise through
// fchownat/utimensat with AT_SYMLINK_NOFOLLOW and lsetxattr on
// /proc/self/fd/<parent>/<name>. A directory being replaced by a
// non-directory is removed with its tree without following symlinks in it.
// Hardlink targets are resolved the same way as parents and must be existing
// non-directories inside dir; a target that is a symlink is linked itself.
// Symlink targets are stored verbatim: they are only resolved later, inside
// the container.
//
// Only user.* and security.capability xattrs from the archive are applied;
// trusted.* (in particular trusted.overlay.*) and every other namespace are
// dropped. Ownership, permission bits (including setuid, setgid and sticky),
// device numbers and modification times are restored; directory times are set
// after all entries are written.
//
// On error the directory is left partially populated; the caller is expected
// to remove it.
package layer
