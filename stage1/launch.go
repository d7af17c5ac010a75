package stage1

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/internal/exe"
	"github.com/karman-project/karman/stage1/poddir"
)

// ErrNoBinary is the error class of a stage1 binary that is not there.
var ErrNoBinary = errors.New("no stage1 binary")

// Binary returns the stage1 binary that stage0 must launch: the path in
// $KARMAN_STAGE1 if set, else BinaryName beside the running executable.
// A binary that is missing, is not an executable file or that users other
// than root could replace is refused, before any of a pod is made.
func Binary() (string, error) {
	p := os.Getenv("KARMAN_STAGE1")
	if p == "" {
		var ok bool
		if p, ok = exe.Beside(poddir.BinaryName); !ok {
			return "", fmt.Errorf("%w: %s is not there (nor is $KARMAN_STAGE1 set): install karman, karman-full and %s side by side (`make install`), or set KARMAN_STAGE1 to the %s built with karman", ErrNoBinary, p, poddir.BinaryName, poddir.BinaryName)
		}
	}
	abs, err := exe.Trusted(p)
	if err != nil {
		return "", fmt.Errorf("stage1 binary: %w: refusing to run pods with it (set KARMAN_STAGE1 to the %s built beside karman)", err, poddir.BinaryName)
	}
	return abs, nil
}

// LaunchOptions are how Launch starts the supervisor.
type LaunchOptions struct {
	// Binary is the stage1 binary (Binary).
	Binary string
	// Debug makes stage1 log debug records to stderr.
	Debug bool
	// Detach starts the supervisor as a child in a session of its own,
	// with /dev/null for stdio (the apps' output is kept in the pod
	// directory), instead of replacing the calling process.
	Detach bool
}

// Launch hands the pod in podDir, prepared by stage0, to its supervisor,
// karman-stage1 __stage1-run, which forks the pod's init and supervises
// the pod until it ends. lock is the pod directory, opened and locked
// with flock(LOCK_EX); the supervisor holds it until the pod is gone. The
// environment is kept (NOTIFY_SOCKET matters), with GOMAXPROCS=1 added
// (stage1Env).
//
// By default the calling process becomes the supervisor (execve: same
// PID, same stdio, the lock kept at its descriptor number, passed with
// --lock-fd), so that the PID a shell or systemd started supervises the
// pod and the pod's exit status is its exit status: Launch returns only
// on failure. With o.Detach the supervisor is a child, the lock its fd 3;
// Launch returns it started, and the caller reaps it (Wait) and may exit
// before it. Either way the same supervisor runs the same pod: what the
// pod is (interactive, notify) is in pod.json.
//
// The lock is not moved to fd 3 before an exec: a Go program's fd 3 is
// usually the runtime's epoll descriptor.
func Launch(podDir string, lock *os.File, o LaunchOptions) (*exec.Cmd, error) {
	if o.Binary == "" {
		return nil, fmt.Errorf("stage1: %w given to Launch", ErrNoBinary)
	}
	abs, err := filepath.Abs(podDir)
	if err != nil {
		return nil, fmt.Errorf("stage1: %w", err)
	}
	if o.Detach {
		cmd := &exec.Cmd{
			Path:        o.Binary,
			Args:        poddir.SupervisorArgs(abs, 3, o.Debug),
			Env:         stage1Env(),
			ExtraFiles:  []*os.File{lock},
			SysProcAttr: &syscall.SysProcAttr{Setsid: true},
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("stage1: start the supervisor: %w", err)
		}
		return cmd, nil
	}
	fd := int(lock.Fd())
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
		return nil, fmt.Errorf("stage1: pass the pod lock: %w", err)
	}
	err = syscall.Exec(o.Binary, poddir.SupervisorArgs(abs, fd, o.Debug), stage1Env())
	unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
	return nil, fmt.Errorf("stage1: exec the supervisor %s: %w", o.Binary, err)
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
