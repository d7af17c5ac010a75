package stage1

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// defaultCaps is the classic container capability set: what an app
// running as root may hold. Everything else is dropped from the bounding
// set before any app starts, so no app (and no command run with enter) can
// gain it, even through a setuid or file-capability binary.
var defaultCaps = []uintptr{
	unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FSETID, unix.CAP_FOWNER,
	unix.CAP_MKNOD, unix.CAP_NET_RAW, unix.CAP_SETGID, unix.CAP_SETUID,
	unix.CAP_SETFCAP, unix.CAP_SETPCAP, unix.CAP_NET_BIND_SERVICE,
	unix.CAP_SYS_CHROOT, unix.CAP_KILL, unix.CAP_AUDIT_WRITE,
}

// restrictApps is the pod init's last step before it starts apps: it sets
// no_new_privs and drops every capability outside defaultCaps from the
// bounding set. Both are per-thread attributes that a child inherits from
// the thread that forks it, and the Go runtime forks from any thread, so
// they are applied to every thread of the init at once
// (syscall.AllThreadsSyscall, which needs a binary built without cgo, as
// karman is). The init keeps its own effective capabilities: the bounding
// set only limits what an execve can grant.
//
// This is the default of the isolators to come (issue 5): per-app
// capability and seccomp settings will build on it.
func restrictApps() error {
	keep := map[uintptr]bool{}
	for _, c := range defaultCaps {
		keep[c] = true
	}
	if _, _, errno := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); errno != 0 {
		return fmt.Errorf("setting no_new_privs for the apps: %w%s", errno, cgoHint(errno))
	}
	for c := uintptr(0); c <= unix.CAP_LAST_CAP; c++ {
		if keep[c] {
			continue
		}
		_, _, errno := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, c, 0)
		if errno == unix.EINVAL {
			break // past the last capability this kernel knows
		}
		if errno != 0 {
			return fmt.Errorf("dropping capability %d from the apps' bounding set: %w%s", c, errno, cgoHint(errno))
		}
	}
	return nil
}

func cgoHint(errno syscall.Errno) string {
	if errors.Is(errno, syscall.ENOTSUP) {
		return " (karman must be built with CGO_ENABLED=0, as `make` does)"
	}
	return ""
}
