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

// spawner starts the pod's processes from one OS thread that carries the
// apps' restrictions: no_new_privs, the reduced bounding set and the
// default seccomp filter (package isolators) are per-thread attributes
// that a child inherits from the thread that forks it. The goroutine stays locked to its thread for the init's whole life
// and never unlocks it: the thread differs from the runtime's others and
// must never run anything else. The init keeps its own capabilities; the
// bounding set only limits what an execve can grant.
//
// This is the default of the isolators to come (issue 5): per-app
// capability and seccomp settings will build on it.
type spawner struct{ reqs chan func() }

func newSpawner() (*spawner, error) {
	s := &spawner{reqs: make(chan func())}
	errc := make(chan error)
	go func() {
		runtime.LockOSThread()
		err := restrictThread()
		if err == nil {
			err = isolators.InstallSeccomp(isolators.DefaultSeccomp())
		}
		if err != nil {
			errc <- err
			return // the goroutine ends locked: the runtime discards the thread
		}
		errc <- nil
		for f := range s.reqs {
			f()
		}
	}()
	return s, <-errc
}

// do runs f on the spawner's thread and waits for it.
func (s *spawner) do(f func()) {
	done := make(chan struct{})
	s.reqs <- func() { f(); close(done) }
	<-done
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
