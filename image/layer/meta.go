//go:build linux

package layer

import (
	"archive/tar"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	paxXattrPrefix   = "SCHILY.xattr."
	paxLibarchiveXat = "LIBARCHIVE.xattr."
	permMask         = 0o7777
)

// dirTimes is a directory whose times are set once all entries are written,
// because creating children changes a directory's mtime.
type dirTimes struct {
	rel string
	ts  [2]unix.Timespec
}

// xattrAllowed reports whether an image may set xattr name. trusted.* (which
// includes overlayfs' own trusted.overlay.*), security.* other than file
// capabilities, ACLs and unknown namespaces are dropped.
func xattrAllowed(name string) bool {
	return strings.HasPrefix(name, "user.") || name == "security.capability"
}

// chownFailed reports whether a chown error must fail the entry. Without
// root, EPERM (and EINVAL for unmapped ids) are expected and ignored.
func (e *extractor) chownFailed(err error) bool {
	if err == nil {
		return false
	}
	return e.isRoot || (err != unix.EPERM && err != unix.EINVAL)
}

// fdMeta sets owner, permission bits and xattrs on an open regular file or
// directory. chown comes first because it clears setuid/setgid and file
// capabilities.
func (e *extractor) fdMeta(fd int, hdr *tar.Header) error {
	if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); e.chownFailed(err) {
		return fmt.Errorf("changing owner to %d:%d: %w", hdr.Uid, hdr.Gid, err)
	}
	if err := unix.Fchmod(fd, uint32(hdr.Mode)&permMask); err != nil {
		return fmt.Errorf("changing mode to %#o: %w", hdr.Mode&permMask, err)
	}
	return e.xattrs(hdr, fd, -1, "")
}

// pathMeta sets owner, permission bits (if chmod), xattrs and times on base
// in pfd without following it; used for symlinks and device nodes.
func (e *extractor) pathMeta(pfd int, base string, hdr *tar.Header, chmod bool) error {
	if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); e.chownFailed(err) {
		return fmt.Errorf("changing owner to %d:%d: %w", hdr.Uid, hdr.Gid, err)
	}
	if chmod {
		mode := uint32(hdr.Mode) & permMask
		err := unix.Fchmodat(pfd, base, mode, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.EOPNOTSUPP || err == unix.ENOSYS {
			// No fchmodat2 (Linux < 6.6). base is the node just created by
			// mknodat, not a symlink, so following is harmless.
			err = unix.Fchmodat(pfd, base, mode, 0)
		}
		if err != nil {
			return fmt.Errorf("changing mode to %#o: %w", mode, err)
		}
	}
	if err := e.xattrs(hdr, -1, pfd, base); err != nil {
		return err
	}
	return e.setTimes(pfd, base, hdr)
}

// xattrs applies the allowed xattrs of hdr, through fd if fd >= 0, else with
// lsetxattr on base in pfd (via /proc/self/fd, final component not followed).
func (e *extractor) xattrs(hdr *tar.Header, fd, pfd int, base string) error {
	for key, val := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(key, paxXattrPrefix)
		if !ok {
			if strings.HasPrefix(key, paxLibarchiveXat) {
				e.debug("layer: dropping libarchive-encoded xattr", "entry", hdr.Name, "record", key)
			}
			continue
		}
		if !xattrAllowed(name) {
			e.debug("layer: dropping xattr", "entry", hdr.Name, "xattr", name)
			continue
		}
		var err error
		if fd >= 0 {
			err = unix.Fsetxattr(fd, name, []byte(val), 0)
		} else {
			err = unix.Lsetxattr(e.procPath(pfd, base), name, []byte(val), 0)
		}
		switch {
		case err == nil:
		case err == unix.EOPNOTSUPP,
			// user.* is not allowed on symlinks and device nodes, and
			// security.capability needs CAP_SETFCAP.
			err == unix.EPERM && (fd < 0 || !e.isRoot):
			e.debug("layer: dropping xattr", "entry", hdr.Name, "xattr", name, "err", err)
		default:
			return fmt.Errorf("setting xattr %q: %w", name, err)
		}
	}
	return nil
}

// timespecs converts the entry's access and modification times; a missing
// access time takes the modification time, a missing time is left alone.
func timespecs(hdr *tar.Header) [2]unix.Timespec {
	mtime := hdr.ModTime
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = mtime
	}
	return [2]unix.Timespec{toTimespec(atime), toTimespec(mtime)}
}

func toTimespec(t time.Time) unix.Timespec {
	if t.IsZero() {
		return unix.Timespec{Nsec: unix.UTIME_OMIT}
	}
	ts, err := unix.TimeToTimespec(t)
	if err != nil {
		return unix.Timespec{Nsec: unix.UTIME_OMIT}
	}
	return ts
}

// setTimes sets the times of base in pfd without following it.
func (e *extractor) setTimes(pfd int, base string, hdr *tar.Header) error {
	ts := timespecs(hdr)
	if err := unix.UtimesNanoAt(pfd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("setting times: %w", err)
	}
	return nil
}

func (e *extractor) recordDir(rel string, hdr *tar.Header) {
	e.dirs = append(e.dirs, dirTimes{rel: rel, ts: timespecs(hdr)})
}

// finishDirs sets the recorded directory times, in archive order so that a
// later duplicate entry wins. Paths that are gone or are no longer
// directories are skipped.
func (e *extractor) finishDirs() error {
	lastDir, pfd, owned := "", e.rootfd, false
	defer func() {
		if owned {
			unix.Close(pfd)
		}
	}()
	for _, d := range e.dirs {
		if d.rel == "" {
			if err := unix.UtimesNanoAt(e.rootfd, ".", d.ts[:], 0); err != nil {
				return fmt.Errorf("setting times of the layer root: %w", err)
			}
			continue
		}
		dirRel, base := splitRel(d.rel)
		if dirRel != lastDir || pfd < 0 {
			if owned {
				unix.Close(pfd)
			}
			var err error
			pfd, owned, err = e.lookupDir(dirRel)
			lastDir = dirRel
			if err != nil {
				pfd = -1
				if err == unix.ENOENT || err == unix.ENOTDIR {
					continue
				}
				return fmt.Errorf("setting times of directory %q: %w", d.rel, err)
			}
		}
		var st unix.Stat_t
		if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		if err := unix.UtimesNanoAt(pfd, base, d.ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("setting times of directory %q: %w", d.rel, err)
		}
	}
	return nil
}
