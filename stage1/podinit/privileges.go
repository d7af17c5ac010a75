package podinit

import (
	"fmt"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/isolators"
	"github.com/karman-project/karman/stage1/poddir"
)

// spawn runs fork, which starts one process of the pod, on a fresh OS
// thread that carries the apps' restrictions: no_new_privs (unless
// App.NewPrivs), the reduced
// bounding set and the default seccomp filter (package isolators; not
// when the process starts through the exec shim, which loads the app's
// filter itself), and, when tasks are given, membership of the app's
// cgroups ("0", this thread, written to each cgroup's "tasks" file). All
// are attributes of the thread that a child inherits, so the process
// starts restricted and inside its cgroup. join, when given, holds a
// pidfd of an app (appNamespaces) whose mount and PID namespaces the
// thread enters first, so that the process starts in them.
// The goroutine ends locked to the thread, so the Go runtime discards the
// thread instead of running anything else on it. The init itself keeps
// its capabilities: the bounding set only limits what an execve grants.
func spawn(app *poddir.App, tasks []int, shim bool, join []int, fork func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- restrictedFork(app, tasks, shim, join, fork)
	}()
	return <-errc
}

func restrictedFork(app *poddir.App, tasks []int, shim bool, join []int, fork func()) error {
	if len(join) > 0 {
		// A thread shares its root and working directory with the
		// others until it unshares them, and may not change its mount
		// namespace before. The PID namespace is the children's.
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			return fmt.Errorf("unshare the thread's root: %w", err)
		}
		if err := unix.Setns(join[0], unix.CLONE_NEWNS|unix.CLONE_NEWPID); err != nil {
			return fmt.Errorf("joining the app's namespaces: %w", err)
		}
	}
	// Without no_new_privs (App.NewPrivs) the filter loads on the
	// strength of the thread's CAP_SYS_ADMIN, here or in the shim before
	// it changes user.
	if !app.NewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("setting no_new_privs for the apps: %w", err)
		}
	}
	// Through the shim the process starts with every capability, which
	// keeps the less privileged processes of the pod out of it until it
	// has dropped them (see execshim.go).
	if !shim {
		if err := dropBounding(app); err != nil {
			return err
		}
		if err := installSeccomp(app); err != nil {
			return err
		}
	}
	// "0" names the writing thread itself: the kernel then moves it
	// without taking the global threadgroup lock, whose RCU grace period
	// would cost milliseconds per hierarchy on every app start.
	for _, fd := range tasks {
		if _, err := unix.Write(fd, []byte("0")); err != nil {
			return fmt.Errorf("joining the app's cgroup: %w", err)
		}
	}
	fork()
	return nil
}

// defaultSeccomp is built once, by the processes that start apps.
var defaultSeccomp = sync.OnceValue(isolators.DefaultSeccomp)

// appFilter is the app's seccomp program: the default one, the app's own
// (--seccomp), or none (nil).
func appFilter(app *poddir.App) ([]unix.SockFilter, error) {
	switch {
	case app.Unconfined:
		return nil, nil
	case app.Seccomp == nil:
		return defaultSeccomp(), nil
	}
	return app.Seccomp.Program()
}

// installSeccomp loads the app's filter on the calling thread.
func installSeccomp(app *poddir.App) error {
	prog, err := appFilter(app)
	if err != nil || len(prog) == 0 {
		return err
	}
	return isolators.InstallSeccomp(prog)
}

// dropBounding drops every capability outside the app's set
// (isolators.DefaultCaps unless the app names its own; none dropped with
// AllCaps) from the calling thread's bounding set.
func dropBounding(app *poddir.App) error {
	if app.AllCaps {
		return nil
	}
	names := app.Caps
	if names == nil {
		names = isolators.DefaultCaps
	}
	nums, err := isolators.CapNumbers(names)
	if err != nil {
		return err
	}
	keep := map[uintptr]bool{}
	for _, c := range nums {
		keep[c] = true
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
