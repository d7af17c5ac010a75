package poddir

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// What a volume may be (Mount) is checked here, on its face, by every
// reader of pod.json; where it resolves, and the mount itself, are the
// init's (package stage1).

// Error classes of volumes, matched with errors.Is.
var (
	// ErrOutsideRoot: a volume source leads out of its Mount.SourceRoot.
	ErrOutsideRoot = errors.New("leads out of its allowed directory")
	// ErrRuntimePath: a volume target is a path the runtime mounts.
	ErrRuntimePath = errors.New("the runtime mounts that path itself")
)

// runtimeOwner names what the runtime mounts at p, a clean absolute path
// inside an app, or returns "" when p is free for a volume: the root,
// /proc and all below, /sys, /dev and all below. Below /sys is free: the
// runtime neither reads nor writes there once volumes are mounted
// (docs/security.md says why that differs from /proc).
func runtimeOwner(p string) string {
	switch {
	case p == "/":
		return "it is the app's root filesystem"
	case p == "/proc" || strings.HasPrefix(p, "/proc/"):
		return "it is in the app's /proc"
	case p == "/sys":
		return "it is the app's /sys"
	case p == "/dev" || strings.HasPrefix(p, "/dev/"):
		return "it is in the app's /dev"
	}
	return ""
}

// CheckMountTarget refuses a volume target the runtime owns: /, /proc,
// /proc/*, /sys, /dev or /dev/*.
func CheckMountTarget(target string) error {
	if why := runtimeOwner(path.Clean("/" + target)); why != "" {
		return fmt.Errorf("volume target %s: %w (%s); mount the volume elsewhere", target, ErrRuntimePath, why)
	}
	return nil
}

// CheckResolvedTarget refuses target when at, where it resolved in the app's
// root, is a path the runtime owns.
func CheckResolvedTarget(target, at string) error {
	why := runtimeOwner(at)
	switch {
	case why == "":
		return nil
	case at == path.Clean("/"+target):
		return CheckMountTarget(target)
	}
	return fmt.Errorf("volume target %s leads to %s in the image: %w (%s); mount the volume elsewhere", target, at, ErrRuntimePath, why)
}

// Check reports what is wrong with m on its face: relative paths, a
// Source not below SourceRoot, a target the runtime owns. Whether the
// source exists and stays below SourceRoot is for CheckSource.
func (m Mount) Check() error {
	if !path.IsAbs(m.Source) || !path.IsAbs(m.Target) {
		return fmt.Errorf("volume %s:%s: both paths must be absolute", m.Source, m.Target)
	}
	if strings.ContainsRune(m.Source+m.Target+m.SourceRoot, 0) {
		return fmt.Errorf("volume %q:%q: a path holds a NUL byte, which no file name can", m.Source, m.Target)
	}
	if m.SourceRoot != "" {
		if !path.IsAbs(m.SourceRoot) {
			return fmt.Errorf("volume %s: its allowed directory %q must be absolute", m.Source, m.SourceRoot)
		}
		if _, ok := Beneath(m.SourceRoot, m.Source); !ok {
			return fmt.Errorf("volume %s: %w %s", m.Source, ErrOutsideRoot, m.SourceRoot)
		}
	}
	if err := checkPropagation(m); err != nil {
		return err
	}
	return CheckMountTarget(m.Target)
}

// Beneath returns p relative to root ("." for root itself) when p, a
// clean absolute path, is root or below it.
func Beneath(root, p string) (string, bool) {
	root, p = path.Clean(root), path.Clean(p)
	switch {
	case p == root:
		return ".", true
	case root == "/":
		return p[1:], true
	case strings.HasPrefix(p, root+"/"):
		return p[len(root)+1:], true
	}
	return "", false
}

// CheckSource resolves m's source as the init will and reports why it
// cannot be mounted: missing, or leading out of SourceRoot (ErrOutsideRoot).
func CheckSource(m Mount) error {
	fd, err := OpenSource(m)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return checkSourcePropagation(m, fd)
}

// OpenSource returns an O_PATH descriptor of m's source: below
// SourceRoot, without following anything out of it, when that is set; as
// the host resolves it otherwise (a volume given on karman's command line
// by the host's root).
func OpenSource(m Mount) (int, error) {
	if m.SourceRoot == "" {
		fd, err := unix.Open(m.Source, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, fmt.Errorf("volume source %s: %w", m.Source, err)
		}
		return fd, nil
	}
	rel, ok := Beneath(m.SourceRoot, m.Source)
	if !ok {
		return -1, fmt.Errorf("volume source %s: %w %s", m.Source, ErrOutsideRoot, m.SourceRoot)
	}
	dir, err := unix.Open(m.SourceRoot, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("volume directory %s: %w", m.SourceRoot, err)
	}
	defer unix.Close(dir)
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS}
	for range 16 {
		fd, err := unix.Openat2(dir, rel, how)
		switch {
		case err == nil:
			return fd, nil
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			continue // a concurrent rename; try again
		case errors.Is(err, unix.EXDEV):
			return -1, fmt.Errorf("volume source %s: %w %s (a symlink or '..' in it points outside)", m.Source, ErrOutsideRoot, m.SourceRoot)
		default:
			return -1, fmt.Errorf("volume source %s: %w", m.Source, err)
		}
	}
	return -1, fmt.Errorf("volume source %s: %w", m.Source, unix.EAGAIN)
}
