package podinit

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"

	"github.com/karman-project/karman/stage1/poddir"
	"golang.org/x/sys/unix"
)

// root is an app's root directory. Every path below it is resolved with
// openat2(RESOLVE_IN_ROOT): an image's symlinks ("/etc/hosts" ->
// "/host/file", "../../..") can never lead a write or a mount out of it,
// even while the host's filesystem is still visible, before the pivot.
type root struct {
	fd   int
	path string
}

func openRoot(path string) (*root, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root %s: %w", path, err)
	}
	return &root{fd: fd, path: path}, nil
}

func (r *root) close() { unix.Close(r.fd) }

// rel turns p, absolute or relative to the root, into a clean relative
// path ("." for the root itself).
func rel(p string) string {
	c := filepath.Clean("/" + p)
	if c == "/" {
		return "."
	}
	return c[1:]
}

// openat opens p inside the root.
func (r *root) openat(p string, flags uint64) (int, error) {
	how := &unix.OpenHow{Flags: flags | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	for range 16 {
		fd, err := unix.Openat2(r.fd, rel(p), how)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue // a concurrent rename; try again
		}
		return fd, err
	}
	return -1, fmt.Errorf("open %s: %w", p, unix.EAGAIN)
}

// mkdirAll creates directory p and its parents inside the root (as root,
// with mode less the umask) and returns an O_PATH descriptor of it.
func (r *root) mkdirAll(p string, mode uint32) (int, error) {
	fd, err := r.openat(p, unix.O_PATH|unix.O_DIRECTORY)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	p = rel(p)
	parent, err := r.mkdirAll(filepath.Dir(p), mode)
	if err != nil {
		return -1, err
	}
	err = unix.Mkdirat(parent, filepath.Base(p), mode)
	unix.Close(parent)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("mkdir %s: %w", p, err)
	}
	return r.openat(p, unix.O_PATH|unix.O_DIRECTORY)
}

// mkfile makes sure p exists inside the root, creating an empty file if
// it does not, and returns an O_PATH descriptor of it.
func (r *root) mkfile(p string) (int, error) {
	fd, err := r.openat(p, unix.O_PATH)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	p = rel(p)
	parent, err := r.mkdirAll(filepath.Dir(p), 0o755)
	if err != nil {
		return -1, err
	}
	f, err := unix.Openat(parent, filepath.Base(p), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	unix.Close(parent)
	if err == nil {
		unix.Close(f)
	} else if !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("create %s: %w", p, err)
	}
	return r.openat(p, unix.O_PATH)
}

// writeFile replaces p inside the root with a regular file holding data.
// A symlink at p is replaced, not followed.
func (r *root) writeFile(p string, data []byte, mode uint32) error {
	p = rel(p)
	parent, err := r.mkdirAll(filepath.Dir(p), 0o755)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	name := filepath.Base(p)
	if err := unix.Unlinkat(parent, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("replace /%s: %w", p, err)
	}
	fd, err := unix.Openat(parent, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return fmt.Errorf("write /%s: %w", p, err)
	}
	defer unix.Close(fd)
	for len(data) > 0 {
		n, err := unix.Write(fd, data)
		if err != nil {
			return fmt.Errorf("write /%s: %w", p, err)
		}
		data = data[n:]
	}
	return nil
}

// mount mounts source on target inside the root, creating target (a
// directory, or an empty file if file is set). The mount goes through
// /proc/self/fd/N of the resolved target, so it lands where openat2 said.
func (r *root) mount(source, target, fstype string, flags uintptr, data string, file bool) error {
	var fd int
	var err error
	if file {
		fd, err = r.mkfile(target)
	} else {
		fd, err = r.mkdirAll(target, 0o755)
	}
	if err != nil {
		return fmt.Errorf("mount point %s: %w", target, err)
	}
	defer unix.Close(fd)
	if err := unix.Mount(source, procFD(fd), fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", source, target, err)
	}
	return nil
}

// remountRO makes the mount on target read-only, keeping flags.
func (r *root) remountRO(target string, flags uintptr) error {
	fd, err := r.openat(target, unix.O_PATH) // resolves to the new mount
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Mount("", procFD(fd), "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|flags, ""); err != nil {
		return fmt.Errorf("remount %s read-only: %w", target, err)
	}
	return nil
}

// pathOf returns where fd, a descriptor of something inside the root, is
// in it: a clean absolute path ("/" for the root itself).
func (r *root) pathOf(fd int) (string, error) {
	top, err := os.Readlink(procFD(r.fd))
	if err != nil {
		return "", err
	}
	at, err := os.Readlink(procFD(fd))
	if err != nil {
		return "", err
	}
	rel, ok := poddir.Beneath(top, at)
	if !ok {
		return "", fmt.Errorf("%s is not inside the app's root %s", at, top)
	}
	return path.Clean("/" + rel), nil
}

// resolve returns where p would be in the root once created: the
// in-root path of its deepest existing ancestor (symlinks followed inside
// the root) joined with the rest of p.
func (r *root) resolve(p string) (string, error) {
	p = rel(p)
	for q := p; ; q = filepath.Dir(q) {
		fd, err := r.openat(q, unix.O_PATH)
		if errors.Is(err, unix.ENOENT) && q != "." {
			continue
		}
		if err != nil {
			return "", err
		}
		at, err := r.pathOf(fd)
		unix.Close(fd)
		if err != nil {
			return "", err
		}
		rest, _ := poddir.Beneath("/"+q, "/"+p)
		return path.Join(at, rest), nil
	}
}

func procFD(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }
