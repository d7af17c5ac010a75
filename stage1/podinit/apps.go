package podinit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/karman-project/karman/stage1/internal/wire"
	"github.com/karman-project/karman/stage1/poddir"
	"golang.org/x/sys/unix"
)

// The app requests of the control socket: an app added to the running
// pod, started (again), stopped and removed. stage0 serializes them per
// pod; the init still checks every precondition on its main loop, which
// owns the apps' run state.

// onLoop runs f on the main loop and waits for it; false if the loop has
// ended (the pod is ending).
func (in *podInit) onLoop(f func()) bool {
	done := make(chan struct{})
	if !in.post(event{do: func() { f(); close(done) }}) {
		return false
	}
	select {
	case <-done:
		return true
	case <-in.done:
		return false
	}
}

var errEnding = errors.New("the pod is ending")

// addApp mounts the app spec in the running pod, from root, a detached
// mount of its root filesystem, and vols, detached clones of its volumes'
// sources (both made by stage0, in the host's mount namespace, which the
// init no longer sees), and registers it, created and not started, with
// tasks, its cgroup files. It takes the descriptors over. On failure
// nothing of the app is left in the pod.
func (in *podInit) addApp(spec *poddir.App, root int, vols, tasks []int) (err error) {
	defer func() {
		unix.Close(root)
		wire.CloseAll(vols)
		if err != nil {
			wire.CloseAll(tasks)
		}
	}()
	switch {
	case spec == nil || !poddir.ValidAppName(spec.Name):
		return errors.New("bad app name")
	case len(spec.Args) == 0 || spec.Args[0] == "":
		return fmt.Errorf("app %s has no command", spec.Name)
	case in.pod.Interactive:
		return errors.New("an interactive pod has exactly one app")
	}
	for _, m := range spec.Mounts {
		if err := m.Check(); err != nil {
			return err
		}
	}
	in.addMu.Lock()
	defer in.addMu.Unlock()
	if in.findApp(spec.Name) != nil {
		return fmt.Errorf("the pod has an app named %s already: choose another name with --name", spec.Name)
	}
	target := filepath.Join(appsDir, spec.Name)
	err = in.withWritableRoot(func() error {
		if err := os.Mkdir(target, 0o755); err != nil {
			return err
		}
		if err := unix.MoveMount(root, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			os.Remove(target)
			return fmt.Errorf("attach the app's root: %w", err)
		}
		if err := in.fillApp(spec, target, in.pod.Net != "host", vols); err != nil {
			unix.Unmount(target, unix.MNT_DETACH)
			os.Remove(target)
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	r, err := openRoot(target)
	if err != nil {
		in.withWritableRoot(func() error {
			unix.Unmount(target, unix.MNT_DETACH)
			return os.Remove(target)
		})
		return err
	}
	a := &appProc{app: spec, root: r, rootPath: target, stdout: -1, stderr: -1, stdin: -1, tasks: tasks}
	if !in.onLoop(func() {
		in.appsMu.Lock()
		in.apps = append(in.apps, a)
		in.appsMu.Unlock()
	}) {
		return errEnding
	}
	in.log.Debug("app added", "app", spec.Name)
	return nil
}

// withWritableRoot runs f with the pod root writable and a /proc of the
// pod's PID namespace at its /proc (the mounts of an app's root go
// through /proc/self/fd), and then makes the root read-only again, with
// no /proc: the apps never see the pod root but through a chroot escape,
// and then only read-only and without /proc.
func (in *podInit) withWritableRoot(f func() error) error {
	const flags = unix.MS_REMOUNT | unix.MS_BIND | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if err := unix.Mount("", "/", "", flags, ""); err != nil {
		return fmt.Errorf("pod root writable: %w", err)
	}
	defer func() {
		if err := unix.Mount("", "/", "", flags|unix.MS_RDONLY, ""); err != nil {
			in.log.Warn("pod root read-only again", "err", err)
		}
	}()
	if err := os.Mkdir("/proc", 0o555); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	defer os.Remove("/proc")
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	defer unix.Unmount("/proc", unix.MNT_DETACH)
	return f()
}

// appStdio are the descriptors an app starts with: its stdout and
// stderr pipes, and its stdin pipe or pseudo-terminal slave, -1 when it
// has none.
type appStdio struct{ stdout, stderr, stdin int }

// close closes them, each once (a pseudo-terminal's slave is all three).
func (s appStdio) close() {
	for _, fd := range uniq([]int{s.stdout, s.stderr, s.stdin}) {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// startAppAgain starts app a, which was added and not started, or has
// exited (a restart), with io, new pipes to the supervisor. It runs on
// the main loop.
func (in *podInit) startAppAgain(a *appProc, io appStdio) error {
	switch {
	case in.stopping:
		io.close()
		return errEnding
	case in.findApp(a.app.Name) != a:
		io.close()
		return fmt.Errorf("app %s was removed", a.app.Name)
	case a.started && !a.exited:
		io.close()
		return fmt.Errorf("app %s is running (pid %d): stop it first with `karman app stop`", a.app.Name, a.pid)
	}
	if a.started {
		a.restarts++
	}
	a.started, a.exited, a.code = false, false, 0
	a.stdout, a.stderr, a.stdin = io.stdout, io.stderr, io.stdin
	return in.startApp(a)
}

// requestPipes asks the supervisor for app a's stdio (MsgPipes): its
// output pipes and, with App.Stdin, its stdin pipe. With App.TTY it opens
// the app's pseudo-terminal, hands the master to the supervisor and
// returns the slave as all three.
func (in *podInit) requestPipes(a *appProc) (appStdio, error) {
	io := appStdio{-1, -1, -1}
	app := a.app.Name
	m := &wire.Message{T: wire.MsgPipes, App: app, Stdin: a.app.Stdin, StdinOnce: a.app.StdinOnce, TTY: a.app.TTY}
	var rights []byte
	want := 2
	if a.app.Stdin {
		want = 3
	}
	if a.app.TTY {
		master, slave, err := openPTY(a.root, &wire.CtlRequest{}, a.app.UID)
		if err != nil {
			return io, fmt.Errorf("app %s: %w", app, err)
		}
		defer unix.Close(master) // the supervisor has its own copy once sent
		io = appStdio{slave, slave, slave}
		rights, want = unix.UnixRights(master), 0
	}
	in.pipesMu.Lock()
	defer in.pipesMu.Unlock()
	if err := wire.Send(in.sup, m, rights); err != nil {
		io.close()
		return appStdio{-1, -1, -1}, err
	}
	select {
	case fds := <-in.pipesC:
		if len(fds) != want {
			wire.CloseAll(fds)
			if io.stdin >= 0 {
				unix.Close(io.stdin)
			}
			return appStdio{-1, -1, -1}, fmt.Errorf("app %s: the supervisor sent %d descriptors for its stdio, want %d", app, len(fds), want)
		}
		if want >= 2 {
			io.stdout, io.stderr = fds[0], fds[1]
		}
		if want == 3 {
			io.stdin = fds[2]
		}
		return io, nil
	case <-in.done:
	case <-time.After(30 * time.Second):
		if io.stdin >= 0 {
			unix.Close(io.stdin)
		}
		return appStdio{-1, -1, -1}, fmt.Errorf("app %s: no output pipes from the supervisor", app)
	}
	if io.stdin >= 0 {
		unix.Close(io.stdin)
	}
	return appStdio{-1, -1, -1}, errEnding
}

// ctlStartApp handles app-start.
func (in *podInit) ctlStartApp(name string) (int, error) {
	a := in.findApp(name)
	if a == nil {
		return 0, fmt.Errorf("no app %s in the pod", name)
	}
	if in.pod.Interactive {
		return 0, errors.New("the app of an interactive pod cannot be started again")
	}
	io, err := in.requestPipes(a)
	if err != nil {
		return 0, err
	}
	var pid int
	if !in.onLoop(func() {
		err = in.startAppAgain(a, io)
		pid = a.pid
	}) {
		io.close()
		return 0, errEnding
	}
	return pid, err
}

// ctlStopApp handles app-stop: SIGTERM to the app, SIGKILL to its
// process group after timeout (the pod's stop timeout when not positive),
// at once with force; it returns the app's exit status once it has ended.
func (in *podInit) ctlStopApp(name string, timeout time.Duration, force bool) (int, error) {
	a := in.findApp(name)
	if a == nil {
		return 0, fmt.Errorf("no app %s in the pod", name)
	}
	if timeout <= 0 {
		timeout = in.pod.StopTimeout
	}
	if timeout <= 0 {
		timeout = poddir.DefaultStopTimeout
	}
	var exited chan struct{}
	var run int
	var err error
	if !in.onLoop(func() {
		if !a.started || a.exited {
			err = fmt.Errorf("app %s is not running: nothing to stop (see `karman app list`)", name)
			return
		}
		exited, run = a.exitedC, a.runs
		sig := unix.SIGTERM
		if force {
			sig = unix.SIGKILL
		}
		in.log.Debug("stopping app", "app", name, "signal", unix.SignalName(sig))
		unix.Kill(a.pid, sig)
	}) {
		return 0, errEnding
	}
	if err != nil {
		return 0, err
	}
	t := time.AfterFunc(timeout, func() {
		in.post(event{do: func() {
			if a.runs == run && !a.exited {
				in.log.Debug("app stop timeout: killing it", "app", name)
				unix.Kill(-a.pid, unix.SIGKILL)
				unix.Kill(a.pid, unix.SIGKILL)
			}
		}})
	})
	defer t.Stop()
	select {
	case <-exited:
	case <-in.done:
		return 0, errEnding
	}
	// The main loop set a.code before it closed exited; the app lock of
	// stage0 keeps it from starting again meanwhile.
	return a.code, nil
}

// ctlRemoveApp handles app-rm: it refuses a running app unless force,
// which kills it first; then it unmounts the app's root with everything
// in it and forgets the app.
func (in *podInit) ctlRemoveApp(name string, force bool) error {
	a := in.findApp(name)
	if a == nil {
		return fmt.Errorf("no app %s in the pod", name)
	}
	for {
		var exited chan struct{}
		var err error
		if !in.onLoop(func() {
			if a.started && !a.exited {
				if !force {
					err = fmt.Errorf("app %s is running: stop it first with `karman app stop`, or remove it with --force", name)
					return
				}
				exited = a.exitedC
				unix.Kill(-a.pid, unix.SIGKILL)
				unix.Kill(a.pid, unix.SIGKILL)
				return
			}
			in.appsMu.Lock()
			for i, x := range in.apps {
				if x == a {
					in.apps = append(in.apps[:i:i], in.apps[i+1:]...)
				}
			}
			in.appsMu.Unlock()
		}) {
			return errEnding
		}
		if err != nil {
			return err
		}
		if exited == nil {
			break
		}
		select {
		case <-exited:
		case <-in.done:
			return errEnding
		}
	}
	in.addMu.Lock()
	defer in.addMu.Unlock()
	a.root.close()
	wire.CloseAll(a.tasks)
	err := in.withWritableRoot(func() error {
		if err := unix.Unmount(a.rootPath, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount the app's root: %w", err)
		}
		return os.Remove(a.rootPath)
	})
	if serr := wire.Send(in.sup, &wire.Message{T: wire.MsgRemoved, App: name}, nil); serr != nil {
		in.log.Warn("reporting app removal", "app", name, "err", serr)
	}
	in.log.Debug("app removed", "app", name)
	return err
}
