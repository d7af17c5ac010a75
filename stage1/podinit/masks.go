package podinit

import (
	"errors"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/stage1/poddir"
)

// emptyDir is the pod root's empty read-only directory.
const emptyDir = ".empty"

// maskPaths masks the app's masked paths, the default ones or those of
// rules: a directory gets the empty read-only directory empty bound over
// it, anything else the app's /dev/null; and makes its read-only paths
// read-only, submounts too (bound onto themselves, then flagged). r is
// the app's root, mounted at target, whose /dev is ready. Paths the app
// does not have are skipped. With empty "", each directory gets an empty
// read-only tmpfs of its own.
func maskPaths(r *root, target, empty string, rules *poddir.PathRules) error {
	masked, readOnly := poddir.DefaultMaskedPaths, poddir.DefaultReadonlyPaths
	if rules != nil {
		masked, readOnly = rules.Masked, rules.ReadOnly
	}
	devNull := filepath.Join(target, "dev/null")
	for _, p := range masked {
		if err := onExisting(r, p, func(fd int) error {
			var st unix.Stat_t
			if err := unix.Fstat(fd, &st); err != nil {
				return err
			}
			switch {
			case st.Mode&unix.S_IFMT != unix.S_IFDIR:
				return unix.Mount(devNull, procFD(fd), "", unix.MS_BIND, "")
			case empty == "":
				return unix.Mount("tmpfs", procFD(fd), "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0,mode=555")
			}
			return unix.Mount(empty, procFD(fd), "", unix.MS_BIND, "")
		}); err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
	}
	for _, p := range readOnly {
		if err := onExisting(r, p, func(fd int) error {
			return unix.Mount(procFD(fd), procFD(fd), "", unix.MS_BIND|unix.MS_REC, "")
		}); err != nil {
			return fmt.Errorf("read-only %s: %w", p, err)
		}
		// Opened again, p is the new mount; only its read-only flag
		// changes, the others (nosuid, noexec of /proc) stay.
		if err := onExisting(r, p, func(fd int) error {
			return unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY})
		}); err != nil {
			return fmt.Errorf("read-only %s: %w", p, err)
		}
	}
	return nil
}

// onExisting runs f with an O_PATH descriptor of p inside r, unless p
// does not exist.
func onExisting(r *root, p string, f func(fd int) error) error {
	fd, err := r.openat(p, unix.O_PATH)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return f(fd)
}
