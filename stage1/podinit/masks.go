package podinit

import (
	"errors"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Paths of /proc and /sys that leak the host or let root in a pod change
// it, hidden or made read-only in every app as production runtimes do.
var (
	maskedFiles = []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats", "/proc/timer_stats"}
	maskedDirs  = []string{"/proc/acpi", "/proc/scsi", "/proc/asound", "/sys/firmware", "/sys/devices/virtual/powercap"}
	readOnly    = []string{"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"}
)

// emptyDir is the pod root's empty read-only directory.
const emptyDir = ".empty"

// maskPaths applies maskedFiles (the app's /dev/null bound over them),
// maskedDirs (empty, the read-only directory empty bound over them) and
// readOnly (bound onto themselves read-only) in the app rooted at r, whose
// /dev is ready. Paths this kernel does not have are skipped. With empty
// "", each directory gets an empty read-only tmpfs of its own.
func maskPaths(r *root, target, empty string) error {
	devNull := filepath.Join(target, "dev/null")
	for _, p := range maskedFiles {
		if err := onExisting(r, p, func(fd int) error {
			return unix.Mount(devNull, procFD(fd), "", unix.MS_BIND, "")
		}); err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
	}
	for _, p := range maskedDirs {
		if err := onExisting(r, p, func(fd int) error {
			if empty == "" {
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
		if err := onExisting(r, p, func(fd int) error {
			return unix.Mount("", procFD(fd), "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
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
