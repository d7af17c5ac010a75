//go:build linux

package layer

import (
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// resolveFlags makes openat2 resolve every path as if the layer directory
// were the root of the filesystem: absolute symlinks and ".." are clamped to
// it, /proc magic links are refused and no mount point is crossed.
const resolveFlags = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// implicitDirMode is the mode of parent directories the archive lacks.
const implicitDirMode = 0o755

// cleanName turns a tar entry name into a clean path relative to the layer
// root ("" is the root itself). Leading slashes are dropped, so absolute names
// stay inside the layer. ok is false when ".." climbs above the start of the
// name.
func cleanName(name string) (rel string, ok bool) {
	c := path.Clean(strings.TrimLeft(name, "/"))
	switch {
	case c == ".":
		return "", true
	case c == ".." || strings.HasPrefix(c, "../"):
		return "", false
	}
	return c, true
}

// splitRel splits a clean non-empty relative path into its parent ("" for
// the root) and final component.
func splitRel(rel string) (dir, base string) {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return "", rel
	}
	return rel[:i], rel[i+1:]
}

// openInRoot opens rel relative to the layer root with in-root resolution.
func (e *extractor) openInRoot(rel string, flags uint64) (int, error) {
	how := unix.OpenHow{Flags: flags | unix.O_CLOEXEC, Resolve: resolveFlags}
	for try := 0; ; try++ {
		fd, err := unix.Openat2(e.rootfd, rel, &how)
		// EAGAIN: a concurrent rename or mount raced with the lookup.
		if err == unix.EINTR || (err == unix.EAGAIN && try < 16) {
			continue
		}
		return fd, err
	}
}

// parent returns a descriptor of the directory dirRel, creating missing
// directories. The descriptor belongs to the extractor (root or cache) and
// must not be closed by the caller; it stays valid until the entry ends.
func (e *extractor) parent(dirRel string) (int, error) {
	if dirRel == "" {
		return e.rootfd, nil
	}
	if fd, ok := e.cached(dirRel); ok {
		return fd, nil
	}
	fd, err := e.openInRoot(dirRel, unix.O_PATH|unix.O_DIRECTORY)
	if err == unix.ENOENT {
		fd, err = e.mkdirAll(dirRel)
	}
	if err != nil {
		return -1, err
	}
	e.setCache(dirRel, fd)
	return fd, nil
}

// lookupDir returns a descriptor of the existing directory dirRel without
// creating anything. owned reports whether the caller must close it.
func (e *extractor) lookupDir(dirRel string) (fd int, owned bool, err error) {
	if dirRel == "" {
		return e.rootfd, false, nil
	}
	if fd, ok := e.cached(dirRel); ok {
		return fd, false, nil
	}
	fd, err = e.openInRoot(dirRel, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return -1, false, err
	}
	return fd, true, nil
}

// mkdirAll creates the missing directories of dirRel one component at a
// time, each resolved in-root, and returns an O_PATH descriptor of the last.
func (e *extractor) mkdirAll(dirRel string) (int, error) {
	pfd, owned := e.rootfd, false
	start := 0
	for {
		end := len(dirRel)
		if i := strings.IndexByte(dirRel[start:], '/'); i >= 0 {
			end = start + i
		}
		prefix, comp := dirRel[:end], dirRel[start:end]
		fd, err := e.openInRoot(prefix, unix.O_PATH|unix.O_DIRECTORY)
		if err == unix.ENOENT {
			// comp is missing (or a dangling symlink, which mkdirat will not
			// follow: EEXIST, and the lookup below fails again).
			existed := false
			err = unix.Mkdirat(pfd, comp, implicitDirMode)
			if err == nil {
				// Undo the umask; comp is the directory just created.
				err = unix.Fchmodat(pfd, comp, implicitDirMode, 0)
			} else if err == unix.EEXIST {
				existed, err = true, nil
			}
			if err == nil {
				fd, err = e.openInRoot(prefix, unix.O_PATH|unix.O_DIRECTORY)
				if err == unix.ENOENT && existed {
					err = fmt.Errorf("dangling symlink: %w", err)
				}
			}
		}
		if owned {
			unix.Close(pfd)
		}
		if err != nil {
			return -1, fmt.Errorf("%q: %w", prefix, err)
		}
		if end == len(dirRel) {
			return fd, nil
		}
		pfd, owned = fd, true
		start = end + 1
	}
}

// cached returns the cached descriptor for dirRel if it is still valid.
func (e *extractor) cached(dirRel string) (int, bool) {
	if e.cacheFd >= 0 && !e.cacheStale && e.cacheKey == dirRel {
		return e.cacheFd, true
	}
	return -1, false
}

// setCache makes fd (owned by the extractor from now on) the cached
// descriptor of dirRel, closing the previous one.
func (e *extractor) setCache(dirRel string, fd int) {
	if e.cacheFd >= 0 {
		unix.Close(e.cacheFd)
	}
	e.cacheKey, e.cacheFd, e.cacheStale = dirRel, fd, false
}

// invalidate marks the cached parent as unusable for later entries: something
// was removed or a symlink appeared, so a path may now resolve differently.
// The descriptor itself stays open until the current entry ends, because the
// entry may still be using it.
func (e *extractor) invalidate() { e.cacheStale = true }

// endEntry drops an invalidated cache entry.
func (e *extractor) endEntry() {
	if e.cacheStale && e.cacheFd >= 0 {
		unix.Close(e.cacheFd)
		e.cacheKey, e.cacheFd = "", -1
	}
	e.cacheStale = false
}

// create runs mk, which makes a non-directory named base in pfd and fails
// with EEXIST when something is there already (a later duplicate entry
// of the layer): then the existing entry is cleared and mk runs again.
// Trying first saves a failing unlink for every entry of a normal layer.
func (e *extractor) create(pfd int, base string, mk func() error) error {
	err := mk()
	if err != unix.EEXIST {
		return err
	}
	if err := e.clear(pfd, base); err != nil {
		return fmt.Errorf("removing existing entry: %w", err)
	}
	return mk()
}

// clear removes whatever exists at base in pfd so that a non-directory can be
// created there. A directory is removed with its whole tree; removal works on
// descriptors (os.RemoveAll opens the parent through /proc/self/fd and then
// uses unlinkat/openat with O_NOFOLLOW), so it cannot leave the directory.
func (e *extractor) clear(pfd int, base string) error {
	err := unix.Unlinkat(pfd, base, 0)
	switch err {
	case nil:
	case unix.ENOENT:
		return nil
	case unix.EISDIR:
		if err := os.RemoveAll(e.procPath(pfd, base)); err != nil {
			return err
		}
	default:
		return err
	}
	e.invalidate()
	return nil
}

// procPath names base inside the directory open as pfd. Only used with
// system calls that do not follow the final component (or, with base == "",
// to reach pfd itself).
func (e *extractor) procPath(pfd int, base string) string {
	b := e.pathBuf[:0]
	b = append(b, "/proc/self/fd/"...)
	b = strconv.AppendInt(b, int64(pfd), 10)
	if base != "" {
		b = append(b, '/')
		b = append(b, base...)
	}
	e.pathBuf = b
	return string(b)
}
