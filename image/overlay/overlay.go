package overlay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrUnavailable says overlayfs cannot be used here (no overlay in the
// kernel, or not allowed to mount one).
var ErrUnavailable = errors.New("overlayfs unavailable")

// Prepare creates the upper, work and empty directories of a rendering
// in dir.
func Prepare(dir string) error {
	for _, d := range []string{"upper", "work", "empty"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// Mount mounts dir/rootfs as an overlay of layers (bottom first) with
// dir/upper and dir/work, which Prepare made.
func Mount(dir string, layers []string) error {
	upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	lower := make([]string, len(layers))
	for i, l := range layers {
		lower[len(layers)-1-i] = l // overlayfs lists the top layer first
	}
	if len(lower) == 0 {
		// An image without layers: an empty lower keeps overlay happy.
		lower = []string{filepath.Join(dir, "empty")}
	}
	target := filepath.Join(dir, "rootfs")
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lower, ":"), upper, work)
	var err error
	if len(opts) < unix.Getpagesize()-1 && !slices.ContainsFunc(append(lower, upper, work), hasSeparator) {
		err = unix.Mount("overlay", target, "overlay", 0, opts)
	} else {
		err = mountOverlayFsconfig(target, lower, upper, work)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENODEV), errors.Is(err, unix.EPERM):
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return fmt.Errorf("mount overlay at %s: %w", target, err)
}

// fsconfigMaxString bounds the length of one fsconfig(2) string value
// (FSCONFIG_SET_STRING copies at most 256 bytes with the NUL).
const fsconfigMaxString = 256

// hasSeparator tells whether path holds a character that separates
// overlayfs options (",") or lower layers (":") in a mount(2) option
// string: such paths go through the new mount API, one value at a time.
func hasSeparator(path string) bool { return strings.ContainsAny(path, ",:") }

// mountOverlayFsconfig uses the new mount API, which takes one lower layer
// per call ("lowerdir+", Linux 6.8) and so has no limit on the total
// length of the layer paths.
func mountOverlayFsconfig(target string, lower []string, upper, work string) error {
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(fsfd)
	for _, l := range lower {
		if err := unix.FsconfigSetString(fsfd, "lowerdir+", l); err != nil {
			return fmt.Errorf("an overlay of %d layers, or of paths holding ',' or ':', needs Linux 6.8 or newer (lowerdir+): %w", len(lower), err)
		}
	}
	if err := unix.FsconfigSetString(fsfd, "upperdir", upper); err != nil {
		return err
	}
	if err := unix.FsconfigSetString(fsfd, "workdir", work); err != nil {
		return err
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return err
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(mfd)
	return unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH)
}

// Detached makes the overlay of layers (bottom first) with dir/upper and
// dir/work, as Mount does, but attaches it nowhere: it returns the
// descriptor of a detached mount (fsmount), which a process in another
// mount namespace can attach with move_mount (an app added to a running
// pod). The caller closes it.
func Detached(dir string, layers []string) (int, error) {
	upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	lower := make([]string, len(layers))
	for i, l := range layers {
		lower[len(layers)-1-i] = l
	}
	if len(lower) == 0 {
		lower = []string{filepath.Join(dir, "empty")}
	}
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer unix.Close(fsfd)
	set := func(k, v string) error {
		if err := unix.FsconfigSetString(fsfd, k, v); err != nil {
			return fmt.Errorf("overlay %s=%s: %w", k, v, err)
		}
		return nil
	}
	// fsconfig takes string values of at most 255 bytes (the kernel copies
	// 256 with the NUL): longer layer lists go one layer at a time.
	if len(strings.Join(lower, ":")) < fsconfigMaxString && !slices.ContainsFunc(lower, hasSeparator) {
		err = set("lowerdir", strings.Join(lower, ":"))
	} else {
		for _, l := range lower {
			if err = set("lowerdir+", l); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = set("upperdir", upper)
	}
	if err == nil {
		err = set("workdir", work)
	}
	if err == nil {
		if err = unix.FsconfigCreate(fsfd); err != nil {
			err = fmt.Errorf("create the overlay: %w", err)
		}
	}
	if err != nil {
		return -1, err
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("mount the overlay: %w", err)
	}
	return mfd, nil
}
