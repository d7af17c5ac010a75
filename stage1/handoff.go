package stage1

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// startedInit is a pod init that Exec started for the supervisor it is
// about to exec.
type startedInit struct {
	proc *os.Process
	fd   int // the supervisor's end of the init's socket, inherited
}

// startInit starts the init of the pod in podDir from the stage1 binary
// of opts, as the supervisor would (initCommand: same namespaces, same network namespace,
// same cgroup), from the calling thread, which must be locked and must
// be the one that then execs the supervisor.
//
// Unless the pod needs the notify relay (which the supervisor makes), the
// init then gets the pod directory at once (msgSetup) and mounts the pod
// while the supervisor starts; the supervisor's boot message follows.
func startInit(podDir string, opts ExecOptions) (*startedInit, error) {
	pod, err := LoadPod(podDir)
	if err != nil {
		return nil, err
	}
	if err := pod.Validate(); err != nil {
		return nil, err
	}
	var cg Cgroups
	if err := readJSON(filepath.Join(podDir, CgroupsFile), &cg); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("pod cgroups: %w", err)
	}
	// What the supervisor would do before it starts the init; the init
	// may use the directory before the supervisor runs.
	if err := prepareDir(podDir); err != nil {
		return nil, err
	}
	mine, initSock, err := initSocket()
	if err != nil {
		return nil, err
	}
	cmd := initCommand(opts.path(), pod, cg.V2, initSock)
	stuck, err := startIn(cmd, pod.NetNS)
	initSock.Close()
	if err != nil && !stuck {
		unix.Close(mine)
		return nil, err
	}
	in := &startedInit{proc: cmd.Process, fd: mine}
	if err != nil {
		// This thread is still in the pod's network namespace (setns back failed, which takes a kernel
		// failure): nothing may run on it any more, not even the
		// cleanup, whose network teardown would act inside the pod.
		// `karman gc` collects what is left of the pod.
		in.abort()
		os.Exit(fail(fmt.Errorf("start the pod init: %w; run `karman gc` to collect the pod", err)))
	}
	// Into the pod's own cgroup of the v1 cpu hierarchies, as the
	// supervisor's forking thread does (Cgroups.Init); the init waits
	// for its bootstrap data, which the supervisor sends later.
	for _, tasks := range cg.Init {
		procs := filepath.Join(filepath.Dir(tasks), "cgroup.procs")
		if err := os.WriteFile(procs, []byte(strconv.Itoa(in.proc.Pid)), 0); err != nil {
			in.abort()
			return nil, fmt.Errorf("moving the init into the pod's cgroup: %w", err)
		}
	}
	if !pod.NotifyApp || os.Getenv("NOTIFY_SOCKET") == "" {
		b, err := json.Marshal(&message{T: msgSetup, PodDir: podDir, Debug: opts.Debug})
		if err == nil {
			err = unix.Sendmsg(mine, b, nil, nil, 0)
		}
		if err != nil {
			in.abort()
			return nil, fmt.Errorf("send %s: %w", msgSetup, err)
		}
	}
	if _, err := unix.FcntlInt(uintptr(mine), unix.F_SETFD, 0); err != nil {
		in.abort()
		return nil, fmt.Errorf("pass the init's socket: %w", err)
	}
	return in, nil
}

// abort kills the init, which has not been told anything yet, and closes
// its socket.
func (in *startedInit) abort() {
	if in.proc != nil {
		in.proc.Kill()
		in.proc.Wait()
	}
	unix.Close(in.fd)
}

// adoptInit takes over the init that Exec started (--init=PID,FD): its
// socket, and the process, which is this process's child.
func (s *supervisor) adoptInit() (*os.Process, error) {
	var err error
	if s.conn, err = fileConn(os.NewFile(uintptr(s.initFD), "stage1-sock")); err != nil {
		return nil, fmt.Errorf("pod init's socket (fd %d): %w", s.initFD, err)
	}
	proc, err := os.FindProcess(s.initPID)
	if err != nil {
		return nil, fmt.Errorf("pod init %d: %w", s.initPID, err)
	}
	// FindProcess finds any process: make sure this one is our child.
	var si unix.Siginfo
	if err := unix.Waitid(unix.P_PID, s.initPID, &si, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil); err != nil {
		if errors.Is(err, unix.ECHILD) {
			return nil, fmt.Errorf("pod init %d is not a child of the supervisor", s.initPID)
		}
		return nil, fmt.Errorf("pod init %d: %w", s.initPID, err)
	}
	return proc, nil
}
