package stage1

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/internal/exe"
)

// The hidden entrypoints of the karman binary. Their names start with "__"
// so that they can never clash with a CLI command.
const (
	// cmdRun is the supervisor: karman __stage1-run [--debug]
	// [--lock-fd=N] [--init=PID,FD [--booted=FD|-,... [--resumed]]] PODDIR. This command line is part of
	// the stage0 -> stage1 interface (InterfaceVersion).
	cmdRun = "__stage1-run"
	// cmdInit is the pod's init, started by the supervisor in new
	// namespaces. It takes no arguments: its bootstrap data arrives on
	// fd 3.
	cmdInit = "__stage1-init"
)

// The pod init starts every app from a goroutine that locks its OS thread,
// gives the thread the app's restrictions (seccomp filter, bounding set,
// cgroup membership on v1) and ends still locked, so that the runtime
// discards the thread. Such a goroutine must never run on the main thread,
// which Go cannot discard: the init's main thread would stay in the app's
// cgroup (where the app's OOM killer can pick the init) with the app's
// filter. Locking the main goroutine to the main thread from the start,
// the documented way, keeps every other goroutine off it
// (TestInitMainThreadStaysOut). The same holds for karman itself, whose
// network code makes a network namespace on a thread that it then
// discards (a main thread left there would keep the namespace alive),
// and for a supervisor that starts the init itself, whose forking thread
// joins the pod's cgroup.
//
// The supervisor that adopts the init Exec started (--init) runs no such
// goroutine, and does not lock: a locked main goroutine costs a process a
// thread more, and a hand-over of the runtime's other goroutines to
// another thread each time it waits, which the supervisor does on every
// pod's start.
func init() {
	if mainThreadBound(os.Args) {
		runtime.LockOSThread()
	}
}

// mainThreadBound tells whether the process started with args may run
// goroutines that must stay off its main thread: all but the supervisor
// that adopts its init.
func mainThreadBound(args []string) bool {
	if len(args) >= 2 && args[1] == cmdRun {
		return !slices.ContainsFunc(args[2:], func(a string) bool { return strings.HasPrefix(a, "--init=") })
	}
	return true
}

// entrypoints is the one table of hidden entrypoints, keyed on os.Args[1].
var entrypoints = map[string]func(args []string) int{
	cmdRun:  supervisorMain,
	cmdInit: initMain,
	cmdExec: execShimMain,
}

// Entrypoint dispatches the hidden re-exec entrypoints of the karman binary
// (the supervisor and the pod init). main calls it first:
//
//	if code, ok := stage1.Entrypoint(os.Args); ok { os.Exit(code) }
//
// It returns handled=false, doing nothing, for every other command line.
func Entrypoint(args []string) (code int, handled bool) {
	if len(args) < 2 {
		return 0, false
	}
	f, ok := entrypoints[args[1]]
	if !ok {
		return 0, false
	}
	return f(args[2:]), true
}

// ExecOptions are the options of Exec.
type ExecOptions struct {
	// Debug makes stage1 log debug records to stderr.
	Debug bool
	// Binary is the stage1 binary to exec (see Binary); empty means the
	// running binary, which serves the entrypoints too.
	Binary string
	// Init, for Exec, is the pod's init started beforehand (StartInit);
	// nil: Exec starts it. Exec takes it over, whatever it returns.
	Init *Init
	// Pod and Cgroups, for Exec, are what the caller has just written to
	// the pod directory (SavePod, WriteCgroups), which Exec then does not
	// read back; nil: Exec reads the files. The supervisor reads them
	// either way.
	Pod     *Pod
	Cgroups *Cgroups
}

// BinaryName is the lean stage1 binary's file name: the supervisor and
// the pod init, without the CLI, the image store or the cgroup library.
const BinaryName = "karman-stage1"

// Binary returns the stage1 binary that stage0 should exec: the path in
// $KARMAN_STAGE1 if set, else BinaryName beside the running executable
// if it is there, else "" (the running binary, which is larger: a pod
// then costs more memory and starts slower). A binary that is not an
// executable file, or that users other than root could replace, is
// refused.
func Binary() (string, error) {
	p := os.Getenv("KARMAN_STAGE1")
	if p == "" {
		var ok bool
		if p, ok = exe.Beside(BinaryName); !ok {
			return "", nil
		}
	}
	abs, err := exe.Trusted(p)
	if err != nil {
		return "", fmt.Errorf("stage1 binary: %w: refusing to run pods with it (set KARMAN_STAGE1 to the %s built beside karman)", err, BinaryName)
	}
	return abs, nil
}

// path is the binary Exec and Command start.
func (o ExecOptions) path() string {
	if o.Binary != "" {
		return o.Binary
	}
	return "/proc/self/exe"
}

// Exec makes the calling process the stage1 supervisor for podDir, and
// returns the pod's exit status if the pod ends before the process has
// exec'd the lean supervisor (see below); the caller must then exit with
// it at once. lock is the pod directory, opened and locked with
// flock(LOCK_EX); the supervisor holds it until the pod has ended. The
// environment is kept (NOTIFY_SOCKET matters). An error is a failure
// before the pod started, which the caller reports (a runtime failure,
// 254).
//
// Exec starts the pod's init before anything else (or takes over
// opts.Init, started earlier still). Unless the pod is interactive or
// needs the notify relay, it also boots the init, which then starts the
// apps at once, and supervises the pod in the calling process for
// handoffDelay: a pod that ends by then (a batch job, a probe) never pays
// for a second program's start. A pod that runs longer is handed to the
// lean supervisor binary: the calling process execs it (same PID, same
// lock) with --init=PID,FD (the init's PID and the supervisor's end of
// its socket), --booted (the apps' output pipes) and --resumed (the
// apps' status so far is in the pod directory). An interactive pod, or
// one with the notify relay, is handed over at once, the init unbooted.
// If that exec fails, Exec kills the init, and with it the apps, and
// returns the error.
//
// The lock keeps its descriptor number, which is passed as --lock-fd: Exec
// does not dup it onto fd 3 because a Go program's fd 3 is usually the
// runtime's epoll descriptor, and replacing it before execve can crash the
// runtime. A supervisor started as a child with the lock as ExtraFiles[0]
// needs no flag: the default is 3.
func Exec(podDir string, lock *os.File, opts ExecOptions) (int, error) {
	abs, err := filepath.Abs(podDir)
	if err != nil {
		opts.Init.Close()
		return 0, fmt.Errorf("stage1: %w", err)
	}
	fd := int(lock.Fd())
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
		opts.Init.Close()
		return 0, fmt.Errorf("stage1: pass the pod lock: %w", err)
	}
	defer unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC) // on failure
	// The init is forked, and the supervisor exec'd, from this one
	// thread: the init's parent-death signal follows the thread that
	// forked it, and a thread of this process other than the one that
	// calls execve ends there.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	in, s, err := startInit(abs, opts)
	if err != nil {
		return 0, fmt.Errorf("stage1: start the pod init: %w", err)
	}
	if in.booted {
		// The lock stays with this process while it supervises in
		// place; handOff passes it on.
		unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
		code := s.superviseInPlace(in, fd, opts)
		runtime.KeepAlive(lock) // its finalizer would close the lock
		return code, nil
	}
	args := supervisorArgs(abs, fd, opts)
	args = slices.Insert(args, len(args)-1, fmt.Sprintf("--init=%d,%d", in.pid, in.fd))
	err = syscall.Exec(opts.path(), args, stage1Env())
	in.abort()
	return 0, fmt.Errorf("stage1: exec the supervisor: %w", err)
}

// rawFD is f's descriptor, left in its mode: f.Fd would make it blocking.
func rawFD(f *os.File) int {
	fd := -1
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(d uintptr) { fd = int(d) })
	}
	return fd
}

// Supervise runs the stage1 supervisor for podDir in the calling process
// instead of exec'ing it, and returns the pod's exit status, which the
// caller must exit with at once. It is Exec without the second start of
// the karman binary (about 2 ms of a pod's start). lock is as for Exec and
// stays open (and locked) until Supervise returns. The caller's other
// descriptors are made close-on-exec, its signal handlers should not stop
// the process on SIGTERM or SIGINT, and it should have nothing else running:
// from here on the process is the pod's supervisor.
func Supervise(podDir string, lock *os.File, opts ExecOptions) int {
	abs, err := filepath.Abs(podDir)
	if err != nil {
		return fail(fmt.Errorf("stage1: %w", err))
	}
	code := supervise(supervisorFlags{podDir: abs, lockFD: int(lock.Fd()), debug: opts.Debug})
	runtime.KeepAlive(lock) // its finalizer would close the lock
	return code
}

// supervisorArgs is the supervisor's command line.
func supervisorArgs(podDir string, lockFD int, opts ExecOptions) []string {
	args := []string{"karman", cmdRun}
	if opts.Debug {
		args = append(args, "--debug")
	}
	if lockFD != 3 {
		args = append(args, "--lock-fd="+strconv.Itoa(lockFD))
	}
	return append(args, podDir)
}

// supervisorFlags parses the supervisor's arguments (after cmdRun).
type supervisorFlags struct {
	podDir string
	lockFD int
	debug  bool
	// initPID and initFD: the init Exec started, and the supervisor's
	// end of its socket (--init=PID,FD).
	initPID, initFD int
	// booted: Exec booted that init too; logFDs are the read ends of the
	// apps' output pipes (--booted=FD,FD,...; none for an interactive pod).
	booted bool
	logFDs []int // -1: an output that ended before a hand-over ("-")
	// resumed: an in-place supervisor (Exec) ran the pod so far; the
	// apps' status files are its (--resumed, with --booted).
	resumed bool
}

func parseSupervisorArgs(args []string) (supervisorFlags, error) {
	f := supervisorFlags{lockFD: 3}
	for _, a := range args {
		switch {
		case a == "--debug":
			f.debug = true
		case strings.HasPrefix(a, "--lock-fd="):
			n, err := strconv.Atoi(strings.TrimPrefix(a, "--lock-fd="))
			if err != nil || n < 3 {
				return f, fmt.Errorf("bad %s", a)
			}
			f.lockFD = n
		case strings.HasPrefix(a, "--init="):
			pid, fd, ok := strings.Cut(strings.TrimPrefix(a, "--init="), ",")
			var err1, err2 error
			f.initPID, err1 = strconv.Atoi(pid)
			f.initFD, err2 = strconv.Atoi(fd)
			if !ok || err1 != nil || err2 != nil || f.initPID < 2 || f.initFD < 3 {
				return f, fmt.Errorf("bad %s", a)
			}
		case strings.HasPrefix(a, "--booted="):
			f.booted = true
			for _, s := range strings.Split(strings.TrimPrefix(a, "--booted="), ",") {
				if s == "" {
					continue
				}
				if s == "-" {
					f.logFDs = append(f.logFDs, -1)
					continue
				}
				fd, err := strconv.Atoi(s)
				if err != nil || fd < 3 {
					return f, fmt.Errorf("bad %s", a)
				}
				f.logFDs = append(f.logFDs, fd)
			}
		case a == "--resumed":
			f.resumed = true
		case strings.HasPrefix(a, "-"):
			return f, fmt.Errorf("unknown flag %s", a)
		case f.podDir != "":
			return f, fmt.Errorf("unexpected argument %q", a)
		default:
			f.podDir = a
		}
	}
	if f.podDir == "" {
		return f, fmt.Errorf("usage: karman %s [--debug] [--lock-fd=N] [--init=PID,FD [--booted=FD|-,... [--resumed]]] PODDIR", cmdRun)
	}
	if f.booted && f.initPID == 0 {
		return f, errors.New("--booted needs --init")
	}
	if f.resumed && !f.booted {
		return f, errors.New("--resumed needs --booted")
	}
	return f, nil
}

// stage1Env is the environment of the supervisor and, but for
// NOTIFY_SOCKET, of the init: the caller's, and GOMAXPROCS=1 unless the
// caller set it. Both do one thing at a time, and the Go runtime keeps a
// cache of partly used memory spans per P: one P instead of this host's
// two saves a pod about 400 KiB (docs/pods.md). The apps' environment is
// their own (App.Env), not this.
func stage1Env() []string {
	env := os.Environ()
	for _, e := range env {
		if strings.HasPrefix(e, "GOMAXPROCS=") {
			return env
		}
	}
	return append(env, "GOMAXPROCS=1")
}

// Command returns the supervisor for podDir as a child process, for pods
// that run detached from the caller: it gets the lock as fd 3, a session of
// its own and /dev/null for stdio (the apps' output is kept in the pod
// directory). The caller starts it and may then exit.
func Command(podDir string, lock *os.File, opts ExecOptions) (*exec.Cmd, error) {
	abs, err := filepath.Abs(podDir)
	if err != nil {
		return nil, fmt.Errorf("stage1: %w", err)
	}
	args := supervisorArgs(abs, 3, opts)
	cmd := &exec.Cmd{
		Path:        opts.path(),
		Args:        args,
		Env:         stage1Env(),
		ExtraFiles:  []*os.File{lock},
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	return cmd, nil
}
