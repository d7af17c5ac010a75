package poddir

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// What an app's security options may be, checked on their face by every
// reader of pod.json: masked and read-only paths, device nodes, the
// propagation of volumes.

// Propagation of a volume (Mount.Propagation).
const (
	PropagationPrivate = "private"
	PropagationSlave   = "rslave"
	PropagationShared  = "rshared"
)

// The paths of /proc and /sys that leak the host or let root in a pod
// change it, masked or made read-only in every app as production runtimes
// do, unless the app gives its own lists (App.Paths).
var (
	DefaultMaskedPaths = []string{
		"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats", "/proc/timer_stats",
		"/proc/acpi", "/proc/scsi", "/proc/asound", "/sys/firmware", "/sys/devices/virtual/powercap",
	}
	DefaultReadonlyPaths = []string{"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"}
)

// MaxPathRules bounds the masked and the read-only paths of an app.
const MaxPathRules = 256

// Check reports a path that is not absolute, not clean, holds a NUL or
// is the root, and lists longer than MaxPathRules. A nil r is the
// defaults.
func (r *PathRules) Check() error {
	if r == nil {
		return nil
	}
	var errs []error
	for _, l := range []struct {
		what  string
		paths []string
	}{{"masked path", r.Masked}, {"read-only path", r.ReadOnly}} {
		if len(l.paths) > MaxPathRules {
			errs = append(errs, fmt.Errorf("%d %ss: at most %d", len(l.paths), l.what, MaxPathRules))
			continue
		}
		for _, p := range l.paths {
			if err := checkAppPath(p); err != nil {
				errs = append(errs, fmt.Errorf("%s %q: %w", l.what, p, err))
			}
		}
	}
	return errors.Join(errs...)
}

// checkAppPath refuses a path inside an app that is not absolute and
// clean, is the root, holds a NUL or is longer than PATH_MAX.
func checkAppPath(p string) error {
	switch {
	case len(p) > unix.PathMax:
		return fmt.Errorf("longer than %d bytes", unix.PathMax)
	case strings.ContainsRune(p, 0):
		return errors.New("holds a NUL byte, which no file name can")
	case !path.IsAbs(p) || path.Clean(p) != p:
		return errors.New("give an absolute path without '.', '..' or a trailing '/'")
	case p == "/":
		return errors.New("that is the app's root")
	}
	return nil
}

// Device is a device node made in an app's /dev (with its owner and
// permission bits) and allowed by the app's device cgroup with Access.
type Device struct {
	// Path is where the node is in the app: below /dev.
	Path string `json:"path"`
	// Type is "c" (character) or "b" (block).
	Type  string `json:"type"`
	Major uint32 `json:"major"`
	Minor uint32 `json:"minor"`
	Mode  uint32 `json:"mode"` // permission bits
	UID   uint32 `json:"uid"`
	GID   uint32 `json:"gid"`
	// Access is what the device cgroup allows: a non-empty subset of
	// "rwm" (read, write, mknod).
	Access string `json:"access"`
}

// Check refuses a device node outside /dev, or one in the directories
// the runtime mounts there (pts, shm, mqueue), of a type other than c or
// b, or with other access than a subset of rwm.
func (d Device) Check() error {
	if err := checkAppPath(d.Path); err != nil {
		return fmt.Errorf("device %q: %w", d.Path, err)
	}
	rel, ok := strings.CutPrefix(d.Path, "/dev/")
	if !ok {
		return fmt.Errorf("device %s: put device nodes below /dev", d.Path)
	}
	top, _, _ := strings.Cut(rel, "/")
	switch top {
	case "pts", "shm", "mqueue", "fd", "stdin", "stdout", "stderr", "ptmx":
		return fmt.Errorf("device %s: the runtime makes /dev/%s itself; put the device elsewhere below /dev", d.Path, top)
	}
	if d.Type != "c" && d.Type != "b" {
		return fmt.Errorf("device %s: type %q: a device node is c (character) or b (block)", d.Path, d.Type)
	}
	if err := CheckDeviceAccess(d.Access); err != nil {
		return fmt.Errorf("device %s: %w", d.Path, err)
	}
	if d.Mode&^0o7777 != 0 {
		return fmt.Errorf("device %s: mode %o holds more than permission bits", d.Path, d.Mode)
	}
	return nil
}

// CheckDeviceAccess refuses cgroup device access other than a non-empty
// subset of "rwm".
func CheckDeviceAccess(a string) error {
	if a == "" || len(a) > 3 || strings.Trim(a, "rwm") != "" {
		return fmt.Errorf("permissions %q: use r, w and m (read, write, mknod), as in rwm or rw", a)
	}
	for i := range a {
		if strings.IndexByte(a[i+1:], a[i]) >= 0 {
			return fmt.Errorf("permissions %q: each of r, w and m once", a)
		}
	}
	return nil
}

// checkPropagation refuses an unknown Mount.Propagation.
func checkPropagation(m Mount) error {
	switch m.Propagation {
	case "", PropagationPrivate, PropagationSlave, PropagationShared:
		return nil
	}
	return fmt.Errorf("volume %s: propagation %q: use private, rslave (the host's mounts below it appear in the app) or rshared (and the app's appear on the host)", m.Source, m.Propagation)
}

// checkSourcePropagation refuses a volume with rslave or rshared
// propagation whose source, fd, is on a mount that propagates nothing:
// rshared needs a shared mount, rslave a shared or slave one.
func checkSourcePropagation(m Mount, fd int) error {
	if m.Propagation != PropagationSlave && m.Propagation != PropagationShared {
		return nil
	}
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &stx); err != nil {
		return fmt.Errorf("volume source %s: %w", m.Source, err)
	}
	shared, slave, err := mountPropagation(stx.Mnt_id)
	if err != nil {
		return fmt.Errorf("volume source %s: %w", m.Source, err)
	}
	switch {
	case shared:
		return nil
	case slave && m.Propagation == PropagationSlave:
		return nil
	case m.Propagation == PropagationSlave:
		return fmt.Errorf("volume %s: propagation rslave needs a source on a shared or slave mount, and its mount is private: make it shared first (mount --make-rshared MOUNTPOINT)", m.Source)
	}
	return fmt.Errorf("volume %s: propagation rshared needs a source on a shared mount, and its mount is not: make it shared first (mount --make-rshared MOUNTPOINT)", m.Source)
}

// mountPropagation reads whether mount id is shared or a slave in this
// process's mount namespace.
func mountPropagation(id uint64) (shared, slave bool, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, false, err
	}
	defer f.Close()
	want := strconv.FormatUint(id, 10)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 7 || fields[0] != want {
			continue
		}
		for _, o := range fields[6:] {
			if o == "-" {
				break
			}
			shared = shared || strings.HasPrefix(o, "shared:")
			slave = slave || strings.HasPrefix(o, "master:")
		}
		return shared, slave, nil
	}
	if err := sc.Err(); err != nil {
		return false, false, err
	}
	return false, false, fmt.Errorf("mount %d is not in /proc/self/mountinfo", id)
}
