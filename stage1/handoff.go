package stage1

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Init is a pod init started before the supervisor that will adopt it:
// by Exec, just before it execs the supervisor, or earlier by StartInit,
// before the pod directory even exists, so that the init's runtime starts
// while stage0 prepares the pod.
type Init struct {
	o   InitOptions
	pid int
	fd  int // the supervisor's end of the init's socket, inherited
	// locked: StartInit locked the calling goroutine to its thread.
	locked bool
	// booted: Exec booted the init as well (bootEarly); logs are the
	// read ends of the apps' output pipes, inherited by the supervisor.
	booted bool
	logs   []*os.File
}

// InitOptions are what a pod init must know before its pod exists: its
// namespaces, which Exec checks against the pod's.
type InitOptions struct {
	// Binary is the stage1 binary (Binary); "" is the running one.
	Binary string
	// HostNet: the host's network namespace (net=host); else a new one
	// with only loopback, which stays so (net=none) or in which stage0
	// makes the pod's networks (NetNS, network.Options.From).
	HostNet bool
	// CgroupV2: the host is cgroup v2 only (Cgroups.V2).
	CgroupV2 bool
	// Interactive: the init gets the caller's stdin (Pod.Interactive).
	Interactive bool
}

// StartInit starts a pod init for a pod that does not exist yet; the init
// waits for its pod directory. The init's parent-death signal follows the
// thread that forked it, and execve ends every thread but the caller's:
// StartInit locks the calling goroutine to its thread, and that goroutine
// must be the one that calls Exec with ExecOptions.Init. Close it if the
// pod is not run (which unlocks the thread).
func StartInit(o InitOptions) (*Init, error) {
	mine, initSock, err := initSocket()
	if err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	pid, err := newInitCommand(ExecOptions{Binary: o.Binary}.path(), !o.HostNet, o.CgroupV2, o.Interactive, initSock).start()
	initSock.Close()
	if err != nil {
		runtime.UnlockOSThread()
		unix.Close(mine)
		return nil, fmt.Errorf("stage1: start the pod init: %w", err)
	}
	return &Init{o: o, pid: pid, fd: mine, locked: true}, nil
}

// NetNS is the init's own network namespace, for stage0 to attach the
// pod's networks to: a path in /proc, or "" for a nil Init or one in the
// host's network namespace.
func (in *Init) NetNS() string {
	if in == nil || in.o.HostNet {
		return ""
	}
	return fmt.Sprintf("/proc/%d/ns/net", in.pid)
}

// Close kills an init that was not handed to Exec, with whatever it
// started, and releases it. It does nothing to a nil Init.
func (in *Init) Close() {
	if in != nil {
		in.abort()
	}
}

// startInit readies the init of the pod in podDir for the supervisor:
// opts.Init, or else one it starts from the stage1 binary of opts, as the
// supervisor would (initCommand: same namespaces, same network namespace,
// same cgroup), from the calling thread, which must be locked and must
// be the one that then execs the supervisor.
//
// Unless the pod needs the notify relay (which the supervisor makes), the
// init then gets the pod directory at once (msgSetup) and mounts the pod
// while the supervisor starts; unless the pod is interactive, it is
// booted too (bootEarly) and starts the apps without waiting for the
// supervisor.
func startInit(podDir string, opts ExecOptions) (_ *Init, _ *supervisor, err error) {
	in := opts.Init
	defer func() {
		if err != nil {
			in.Close() // the one made below too
		}
	}()
	pod := opts.Pod
	if pod == nil {
		if pod, err = LoadPod(podDir); err != nil {
			return nil, nil, err
		}
	}
	if err := pod.Validate(); err != nil {
		return nil, nil, err
	}
	s := &supervisor{dir: podDir, pod: pod, debug: opts.Debug}
	if opts.Cgroups != nil {
		s.setCgroups(*opts.Cgroups)
	} else if err := s.loadCgroups(); err != nil {
		return nil, nil, err
	}
	if in != nil {
		want := InitOptions{Binary: in.o.Binary, HostNet: pod.Net == "host", CgroupV2: s.cgroupV2, Interactive: pod.Interactive}
		if in.o != want {
			return nil, nil, fmt.Errorf("the pod init started beforehand has namespaces %+v, but pod %s needs %+v", in.o, pod.UUID, want)
		}
		if pod.NetNS != "" && !sameFile(pod.NetNS, in.NetNS()) {
			return nil, nil, fmt.Errorf("pod %s's network namespace %s is not that of the pod init started beforehand (%s)", pod.UUID, pod.NetNS, in.NetNS())
		}
	}
	// What the supervisor would do before it starts the init; the init
	// may use the directory before the supervisor runs.
	if err := prepareDir(podDir); err != nil {
		return nil, nil, err
	}
	if in == nil {
		mine, initSock, err := initSocket()
		if err != nil {
			return nil, nil, err
		}
		cmd := newInitCommand(opts.path(), pod.ownNet(), s.cgroupV2, pod.Interactive, initSock)
		pid, stuck, err := startIn(cmd, pod.NetNS)
		initSock.Close()
		if err != nil && !stuck {
			unix.Close(mine)
			return nil, nil, err
		}
		in = &Init{pid: pid, fd: mine}
		if err != nil {
			// This thread is still in the pod's network namespace (setns
			// back failed, which takes a kernel failure): nothing may run
			// on it any more, not even the cleanup, whose network
			// teardown would act inside the pod. `karman gc` collects
			// what is left of the pod.
			in.abort()
			os.Exit(fail(fmt.Errorf("start the pod init: %w; run `karman gc` to collect the pod", err)))
		}
	}
	if err := s.sendEarly(in, pod, podDir, opts); err != nil {
		return nil, nil, err
	}
	if _, err := unix.FcntlInt(uintptr(in.fd), unix.F_SETFD, 0); err != nil {
		return nil, nil, fmt.Errorf("pass the init's socket: %w", err)
	}
	return in, s, nil
}

// sendEarly sends the init what the supervisor would, once it runs:
// unless the pod needs the notify relay (which the supervisor makes),
// the pod directory (setup), and unless the pod is interactive, its
// boot message too (bootEarly).
func (s *supervisor) sendEarly(in *Init, pod *Pod, podDir string, opts ExecOptions) error {
	if pod.NotifyApp && os.Getenv("NOTIFY_SOCKET") != "" {
		return nil
	}
	if err := sendMsg(rawSock(in.fd), &message{T: msgSetup, PodDir: podDir, Debug: opts.Debug, InitCgroup: s.initCgroup}, nil); err != nil {
		return err
	}
	if pod.Interactive {
		return nil
	}
	var err error
	if in.logs, err = s.bootEarly(rawSock(in.fd)); err != nil {
		return err
	}
	in.booted = true
	return nil
}

// sameFile tells whether a and b name the same file (for namespaces: the
// same namespace).
func sameFile(a, b string) bool {
	var sa, sb unix.Stat_t
	return a != "" && b != "" && unix.Stat(a, &sa) == nil && unix.Stat(b, &sb) == nil && sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// bootEarly sends the init, over c, what the supervisor would send once
// it runs (boot: the write ends of the apps' output pipes; then the
// cgroup task files), so that the init starts the apps as soon as it has
// mounted the pod, without waiting for the supervisor's runtime to start.
// It returns the pipes' read ends, for the supervisor's tees; until the
// supervisor reads them, the pipes hold what the apps write (64 KiB each),
// and the socket holds what the init reports.
func (s *supervisor) bootEarly(c packetWriter) ([]*os.File, error) {
	rs, ws, err := s.logPipes()
	if err != nil {
		return nil, err
	}
	err = s.boot(c, ws)
	closeFiles(ws) // the init has its own copies now
	if err == nil {
		err = s.sendCgroups(c)
	}
	if err != nil {
		closeFiles(rs)
		return nil, err
	}
	return rs, nil
}

// abort kills the init, and with it the apps it may have started, and
// closes its socket and the apps' output pipes.
func (in *Init) abort() {
	if in.pid > 0 {
		unix.Kill(in.pid, unix.SIGKILL)
		waitPID(in.pid)()
	}
	unix.Close(in.fd)
	closeFiles(in.logs)
	if in.locked {
		runtime.UnlockOSThread()
		in.locked = false
	}
}

// initProc is the pod init as its parent, the supervisor, sees it.
type initProc struct {
	pid  int
	wait func() (unix.WaitStatus, error) // reaps it
}

// waitPID reaps the child pid, waiting for it to end.
func waitPID(pid int) func() (unix.WaitStatus, error) {
	return func() (unix.WaitStatus, error) {
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(pid, &ws, 0, nil)
			if err != unix.EINTR {
				return ws, err
			}
		}
	}
}

// adoptInit takes over the init that Exec started (--init=PID,FD): its
// socket, and the process, which must be this process's child. It is
// waited for by PID (wait4) rather than as an os.Process, whose first use
// costs a Go program a test fork (the runtime's pidfd probe) on the way
// to the pod's end.
func (s *supervisor) adoptInit() (initProc, error) {
	var err error
	if s.conn, err = fileConn(os.NewFile(uintptr(s.initFD), "stage1-sock")); err != nil {
		return initProc{}, fmt.Errorf("pod init's socket (fd %d): %w", s.initFD, err)
	}
	var si unix.Siginfo
	if err := unix.Waitid(unix.P_PID, s.initPID, &si, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil); err != nil {
		if errors.Is(err, unix.ECHILD) {
			return initProc{}, fmt.Errorf("pod init %d is not a child of the supervisor", s.initPID)
		}
		return initProc{}, fmt.Errorf("pod init %d: %w", s.initPID, err)
	}
	return initProc{pid: s.initPID, wait: waitPID(s.initPID)}, nil
}
