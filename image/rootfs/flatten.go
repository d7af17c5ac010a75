package rootfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// flatten copies layers (bottom first) into dst with overlayfs semantics:
// a character device 0:0 deletes what lower layers had at its path, an
// opaque directory hides the lower directory's contents, a directory over
// a lower non-directory replaces it, and other entries replace lower ones.
//
// Every directory of a layer is visited before its contents and made a
// real directory in dst first, so no write ever passes through a symlink
// that a lower layer put in dst.
func flatten(ctx context.Context, layers []string, dst string) error {
	type dirMeta struct {
		src, path string
		info      fs.FileInfo
	}
	var dirs []dirMeta
	for _, layer := range layers {
		links := map[uint64]string{} // inode in this layer -> path in dst
		err := filepath.WalkDir(layer, func(src string, de fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			rel, _ := filepath.Rel(layer, src)
			target := filepath.Join(dst, rel)
			info, err := de.Info()
			if err != nil {
				return err
			}
			st := info.Sys().(*syscall.Stat_t)
			if rel == "." {
				dirs = append(dirs, dirMeta{src, target, info})
				return nil
			}
			if isWhiteout(info) {
				return os.RemoveAll(target)
			}
			if info.IsDir() {
				if cur, err := os.Lstat(target); err == nil && !cur.IsDir() {
					if err := os.Remove(target); err != nil {
						return err
					}
				}
				if err := os.Mkdir(target, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
					return err
				}
				if opaque(src) {
					if err := emptyDir(target); err != nil {
						return err
					}
				}
				dirs = append(dirs, dirMeta{src, target, info})
				return nil
			}
			if err := os.RemoveAll(target); err != nil {
				return err
			}
			if first, ok := links[st.Ino]; ok && st.Nlink > 1 {
				return os.Link(first, target)
			}
			if err := copyEntry(src, target, info); err != nil {
				return err
			}
			links[st.Ino] = target
			return applyMeta(src, target, info)
		})
		if err != nil {
			return fmt.Errorf("layer %s: %w", filepath.Base(layer), err)
		}
	}
	// Directory metadata last, deepest first, so that read-only modes and
	// mtimes are not disturbed by later writes.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := applyMeta(dirs[i].src, dirs[i].path, dirs[i].info); err != nil {
			return err
		}
	}
	return nil
}

func isWhiteout(info fs.FileInfo) bool {
	st := info.Sys().(*syscall.Stat_t)
	return info.Mode()&fs.ModeCharDevice != 0 && st.Rdev == 0
}

func opaque(dir string) bool {
	buf := make([]byte, 1)
	n, err := unix.Lgetxattr(dir, "trusted.overlay.opaque", buf)
	return err == nil && n == 1 && buf[0] == 'y'
}

func emptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func copyEntry(src, dst string, info fs.FileInfo) error {
	st := info.Sys().(*syscall.Stat_t)
	switch m := info.Mode(); {
	case m.IsRegular():
		in, err := os.Open(src)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, in) // copy_file_range: reflinks where the filesystem can
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		return err
	case m&fs.ModeSymlink != 0:
		link, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(link, dst)
	default:
		return unix.Mknod(dst, st.Mode, int(st.Rdev))
	}
}

// applyMeta copies ownership, mode, xattrs (but overlayfs's own) and times
// from src, described by info, to dst.
func applyMeta(src, dst string, info fs.FileInfo) error {
	st := info.Sys().(*syscall.Stat_t)
	if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil && os.Geteuid() == 0 {
		return err
	}
	if info.Mode()&fs.ModeSymlink == 0 {
		if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
			return err
		}
	}
	if err := copyXattrs(src, dst); err != nil {
		return err
	}
	ts := []unix.Timespec{unix.NsecToTimespec(time.Now().UnixNano()), unix.NsecToTimespec(info.ModTime().UnixNano())}
	return unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW)
}

func copyXattrs(src, dst string) error {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(src, buf)
	if err != nil || n == 0 {
		return nil
	}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if strings.HasPrefix(name, "trusted.overlay.") {
			continue
		}
		val := make([]byte, 64<<10)
		vn, err := unix.Lgetxattr(src, name, val)
		if err != nil {
			continue
		}
		if err := unix.Lsetxattr(dst, name, val[:vn], 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("xattr %s on %s: %w", name, dst, err)
		}
	}
	return nil
}
