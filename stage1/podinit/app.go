package podinit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/karman-project/karman/stage1/internal/wire"
	"github.com/karman-project/karman/stage1/poddir"
	"golang.org/x/sys/unix"
)

// defaultPath is the PATH used to find a command when the app's
// environment has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// proc describes a process to start in an app's root: an app itself or
// an enter session.
type proc struct {
	app      *poddir.App
	root     *root
	rootPath string
	args     []string
	env      []string
	files    []int // stdin, stdout, stderr
	setup    func(*syscall.SysProcAttr)
	// newPIDNS starts the process as PID 1 of a PID namespace of its own
	// (an app with OwnPIDNamespace), in a mount namespace of its own
	// whose /proc the exec shim mounts for that PID namespace.
	newPIDNS bool
	// join, when set, is the running app whose PID and mount namespaces
	// the process joins (an enter session in an app with
	// OwnPIDNamespace).
	join *appProc
}

// execError is a command that could not be started: Code is 127 (not
// found), 126 (cannot execute) or 254 (karman failed).
type execError struct {
	Code   int
	Path   string
	Reason string
}

func (e *execError) Error() string { return e.Path + ": " + e.Reason }

// startApp starts app a; a command that cannot be started ends the app
// with 127 or 126 and one line on its stderr.
func (in *podInit) startApp(a *appProc) (startErr error) {
	stdin, stdout, stderr := -1, a.stdout, a.stderr
	switch {
	case in.pod.Interactive:
		stdin, stdout, stderr = 0, 1, 2
	case a.stdin >= 0:
		stdin = a.stdin // its stdin pipe, or its terminal's slave
	default:
		// The app's own /dev/null, so that /proc/self/fd/0 makes sense
		// inside.
		fd, err := a.root.openat("/dev/null", unix.O_RDONLY)
		if err != nil {
			in.log.Warn("opening /dev/null", "app", a.app.Name, "err", err)
		} else {
			stdin = fd
			defer unix.Close(fd)
		}
	}
	env := a.app.Env
	if in.notify {
		env = setEnv(env, "NOTIFY_SOCKET", poddir.AppNotifySocket)
	}
	p := &proc{
		app: a.app, root: a.root, rootPath: a.rootPath, args: a.app.Args, env: env,
		files:    []int{stdin, stdout, stderr},
		newPIDNS: a.app.OwnPIDNamespace,
		setup: func(sys *syscall.SysProcAttr) {
			switch {
			case in.pod.Interactive && wire.IsTerminal(0):
				// The app's own process group gets the terminal, so
				// ^C and ^Z reach it and not the supervisor.
				sys.Foreground, sys.Ctty = true, 0
			case a.app.TTY && !in.pod.Interactive:
				sys.Setsid, sys.Setctty, sys.Ctty = true, true, 0
			default:
				sys.Setsid = true
			}
		},
	}
	in.running++
	a.runs++
	a.exitedC = make(chan struct{})
	_, err := in.launch(p, func(pid int) {
		a.pid, a.started = pid, true
		// The kernel translates this PID into the supervisor's namespace.
		creds := unix.UnixCredentials(&unix.Ucred{Pid: int32(pid), Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid())})
		if err := wire.Send(in.sup, &wire.Message{T: wire.MsgStarted, App: a.app.Name, PID: pid, Time: time.Now(), Restarts: a.restarts}, creds); err != nil {
			in.log.Warn("reporting app start", "app", a.app.Name, "err", err)
		}
	}, func(ws unix.WaitStatus) { in.appExited(a, ws) })
	if err != nil {
		var xe *execError
		if !errors.As(err, &xe) {
			xe = &execError{Code: poddir.ExitRuntimeError, Path: a.app.Args[0], Reason: err.Error()}
		}
		fmt.Fprintf(fdWriter(stderr), "karman: app %s: %s: %s\n", a.app.Name, xe.Path, xe.Reason)
		a.started, a.exited, a.code = true, true, xe.Code
		in.running--
		close(a.exitedC)
		a.exitedC = nil
		startErr = xe
		if err := wire.Send(in.sup, &wire.Message{T: wire.MsgExited, App: a.app.Name, Time: time.Now(), Code: xe.Code, Reason: xe.Reason}, nil); err != nil {
			in.log.Warn("reporting app exit", "app", a.app.Name, "err", err)
		}
	}
	// The app holds its output pipes now; the supervisor sees EOF when
	// the app and whatever inherited them are gone.
	appStdio{a.stdout, a.stderr, a.stdin}.close()
	a.stdout, a.stderr, a.stdin = -1, -1, -1
	return startErr
}

// launch starts p in its app's root with the app's user, group and
// groups, and registers onExit for its wait status. started runs with the
// child registered and not yet reapable.
func (in *podInit) launch(p *proc, started func(pid int), onExit func(unix.WaitStatus)) (int, error) {
	wd := p.app.WorkingDir
	if wd == "" {
		wd = "/"
	}
	wd = filepath.Clean("/" + wd)
	// A missing working directory is created, as runc and Docker do.
	fd, err := p.root.mkdirAll(wd, 0o755)
	if err != nil {
		return 0, &execError{Code: poddir.ExitCannotExec, Path: wd, Reason: "working directory: " + errText(err)}
	}
	unix.Close(fd)
	path, err := lookPath(p.root, p.args[0], getEnv(p.env, "PATH"), wd)
	if err != nil {
		return 0, err
	}
	files := make([]uintptr, len(p.files))
	for i, f := range p.files {
		files[i] = uintptr(f)
	}
	tasks, cgroupFD := in.appCgroup(p.app.Name)
	var shim *shimStart
	if p.newPIDNS || needsExecShim(p.app, cgroupFD >= 0) {
		if shim, err = newShimStart(p.app, wd, p.env, p.newPIDNS); err != nil {
			return 0, &execError{Code: poddir.ExitRuntimeError, Path: path, Reason: err.Error()}
		}
		defer shim.close()
	}
	sys := &syscall.SysProcAttr{
		// The app's root is a directory of the pod root, which is all
		// the init can see; see doc.go for why chroot is enough here.
		Chroot:     p.rootPath,
		Credential: &syscall.Credential{Uid: p.app.UID, Gid: p.app.GID, Groups: p.app.GIDs},
	}
	if p.setup != nil {
		p.setup(sys)
	}
	if cgroupFD >= 0 {
		// cgroup v2: forked straight into the app's cgroup (clone3), with
		// a cgroup namespace of its own rooted there.
		sys.UseCgroupFD, sys.CgroupFD = true, cgroupFD
		sys.Unshareflags |= unix.CLONE_NEWCGROUP
	}
	if p.newPIDNS {
		// The app is PID 1 of its namespace, as runc starts a container
		// with a PID namespace of its own: no reaper of ours in between.
		// Its mount namespace, a private copy of the pod's, holds the
		// /proc of that namespace, which only a process inside it can
		// mount (the shim does), and goes with the app's last process.
		sys.Cloneflags |= unix.CLONE_NEWPID | unix.CLONE_NEWNS
	}
	attr := &syscall.ProcAttr{Dir: wd, Env: p.env, Files: files, Sys: sys}
	execPath, argv := path, p.args
	if shim != nil {
		execPath, argv = shim.prepare(attr, path, p.args)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	var join []int
	if p.join != nil {
		if join, err = in.appNamespaces(p.join); err != nil {
			return 0, &execError{Code: poddir.ExitRuntimeError, Path: path, Reason: err.Error()}
		}
		defer func() {
			for _, fd := range join {
				unix.Close(fd)
			}
		}()
	}
	var pid int
	var forkErr error
	err = spawn(p.app, tasks, shim != nil, join, func() {
		pid, forkErr = syscall.ForkExec(execPath, argv, attr)
	})
	if err != nil {
		// The restrictions or the cgroup could not be applied: karman's
		// failure, not the app's, whatever the error number says.
		return 0, &execError{Code: poddir.ExitRuntimeError, Path: path, Reason: err.Error()}
	}
	if forkErr != nil {
		return 0, execErrno(path, forkErr)
	}
	if shim != nil {
		// The app counts as started once the shim has exec'd it: until
		// then signals would reach the shim, and exec errors report here.
		if err := shim.wait(); err != nil {
			return 0, err // the reaper collects the shim as an orphan
		}
	}
	in.children[pid] = onExit
	if started != nil {
		started(pid)
	}
	return pid, nil
}

// appNamespaces returns a pidfd of running app a, whose mount and PID
// namespaces spawn joins. The caller holds in.mu: a child not yet reaped
// keeps its pid.
func (in *podInit) appNamespaces(a *appProc) ([]int, error) {
	if a.pid <= 0 || in.children[a.pid] == nil {
		return nil, fmt.Errorf("app %s has a PID namespace of its own and is not running: start it first (karman app start)", a.app.Name)
	}
	fd, err := unix.PidfdOpen(a.pid, 0)
	if err != nil {
		return nil, fmt.Errorf("app %s: its namespaces: %w", a.app.Name, err)
	}
	return []int{fd}, nil
}

// lookPath finds name the way a shell would, inside the root: a name with
// a slash is taken as it is (relative to wd), others are looked up in
// pathEnv. A file found but not executable gives 126, nothing 127.
func lookPath(r *root, name, pathEnv, wd string) (string, error) {
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(wd, p)
		}
		return p, checkExec(r, p)
	}
	if pathEnv == "" {
		pathEnv = defaultPath
	}
	var firstErr error
	for _, dir := range filepath.SplitList(pathEnv) {
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(wd, dir)
		}
		p := filepath.Join(dir, name)
		err := checkExec(r, p)
		if err == nil {
			return p, nil
		}
		var xe *execError
		if firstErr == nil && errors.As(err, &xe) && xe.Code == poddir.ExitCannotExec {
			firstErr = err
		}
	}
	if firstErr != nil {
		return "", firstErr
	}
	return "", &execError{Code: poddir.ExitNotFound, Path: name, Reason: "not found in PATH " + pathEnv}
}

// checkExec tells whether p is an executable file inside the root.
func checkExec(r *root, p string) error {
	fd, err := r.openat(p, unix.O_PATH)
	if err != nil {
		if errors.Is(err, unix.EACCES) {
			return &execError{Code: poddir.ExitCannotExec, Path: p, Reason: "permission denied"}
		}
		return &execError{Code: poddir.ExitNotFound, Path: p, Reason: "not found"}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &execError{Code: poddir.ExitCannotExec, Path: p, Reason: errText(err)}
	}
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFDIR:
		return &execError{Code: poddir.ExitCannotExec, Path: p, Reason: "is a directory"}
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return &execError{Code: poddir.ExitCannotExec, Path: p, Reason: "not a regular file"}
	case st.Mode&0o111 == 0:
		return &execError{Code: poddir.ExitCannotExec, Path: p, Reason: "not executable (permission denied)"}
	}
	return nil
}

// execErrno maps a failed fork/exec to the shell's status codes.
func execErrno(path string, err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return &execError{Code: poddir.ExitRuntimeError, Path: path, Reason: err.Error()}
	}
	switch errno {
	case unix.ENOENT, unix.ENOTDIR, unix.ELOOP:
		// Also a script whose interpreter is missing.
		return &execError{Code: poddir.ExitNotFound, Path: path, Reason: "not found (or its interpreter is missing)"}
	case unix.EACCES, unix.EPERM, unix.ENOEXEC, unix.EISDIR, unix.ETXTBSY, unix.ELIBBAD, unix.E2BIG, unix.EINVAL:
		return &execError{Code: poddir.ExitCannotExec, Path: path, Reason: "cannot execute: " + errText(err)}
	}
	return &execError{Code: poddir.ExitRuntimeError, Path: path, Reason: "start: " + errText(err)}
}

// errText is the bare text of an error number ("permission denied").
func errText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}

func getEnv(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], key+"="); ok {
			return v
		}
	}
	return ""
}

func setEnv(env []string, key, value string) []string {
	out := make([]string, 0, len(env)+1)
	for _, e := range env {
		if !strings.HasPrefix(e, key+"=") {
			out = append(out, e)
		}
	}
	return append(out, key+"="+value)
}

// fdWriter writes to a raw descriptor the caller keeps open.
type fdWriter int

func (w fdWriter) Write(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Write(int(w), b[n:])
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

// appCgroup returns what starts the named app inside its cgroup: its
// task files (v1), or its cgroup2 directory (v2, cgroupFD >= 0).
func (in *podInit) appCgroup(name string) (tasks []int, cgroupFD int) {
	a := in.findApp(name)
	switch {
	case a == nil || len(a.tasks) == 0:
		return nil, -1
	case in.cgroupV2:
		return nil, a.tasks[0]
	}
	return a.tasks, -1
}

// findApp returns the pod's app named name, or nil.
func (in *podInit) findApp(name string) *appProc {
	in.appsMu.RLock()
	defer in.appsMu.RUnlock()
	for _, a := range in.apps {
		if a.app.Name == name {
			return a
		}
	}
	return nil
}
