package stage1

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/isolators"
)

// defaultCaps is the classic container capability set: what an app
// running as root may hold. Everything else is dropped from the bounding
// set of the thread that starts apps, so no app (and no command run with
// enter) can gain it, even through a setuid or file-capability binary.
var defaultCaps = []uintptr{
	unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FSETID, unix.CAP_FOWNER,
	unix.CAP_MKNOD, unix.CAP_NET_RAW, unix.CAP_SETGID, unix.CAP_SETUID,
	unix.CAP_SETFCAP, unix.CAP_SETPCAP, unix.CAP_NET_BIND_SERVICE,
	unix.CAP_SYS_CHROOT, unix.CAP_KILL, unix.CAP_AUDIT_WRITE,
}

// spawn runs fork, which starts one process of the pod, on a fresh OS
// thread that carries the apps' restrictions: no_new_privs, the reduced
// bounding set and the default seccomp filter (package isolators), and,
// when tasks are given, membership of the app's cgroups (its TID written
// to each cgroup's "tasks" file). All are attributes of the thread that a
// child inherits, so the process starts restricted and inside its cgroup.
// The goroutine ends locked to the thread, so the Go runtime discards the
// thread instead of running anything else on it. The init itself keeps
// its capabilities: the bounding set only limits what an execve grants.
func spawn(tasks []int, fork func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- restrictedFork(tasks, fork)
	}()
	return <-errc
}

func restrictedFork(tasks []int, fork func() error) error {
	if err := restrictThread(); err != nil {
		return err
	}
	if err := isolators.InstallSeccomp(defaultSeccomp); err != nil {
		return err
	}
	// "0" names the writing thread itself: the kernel then moves it
	// without taking the global threadgroup lock, whose RCU grace period
	// would cost milliseconds per hierarchy on every app start.
	for _, fd := range tasks {
		if _, err := unix.Write(fd, []byte("0")); err != nil {
			return fmt.Errorf("joining the app's cgroup: %w", err)
		}
	}
	return fork()
}

// defaultSeccomp is built once per init.
var defaultSeccomp = isolators.DefaultSeccomp()

// checkRestrictions fails early, before any app, if this kernel refuses
// the restrictions apps start with.
func checkRestrictions() error {
	return spawn(nil, func() error { return nil })
}

// restrictThread sets no_new_privs and drops every capability outside
// defaultCaps from the calling thread's bounding set.
func restrictThread() error {
	keep := map[uintptr]bool{}
	for _, c := range defaultCaps {
		keep[c] = true
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("setting no_new_privs for the apps: %w", err)
	}
	for c := uintptr(0); c <= unix.CAP_LAST_CAP; c++ {
		if keep[c] {
			continue
		}
		err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0)
		if err == unix.EINVAL {
			break // past the last capability this kernel knows
		}
		if err != nil {
			return fmt.Errorf("dropping capability %d from the apps' bounding set: %w", c, err)
		}
	}
	return nil
}
