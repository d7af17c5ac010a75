package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/karman-project/karman/internal/multicall"
	"github.com/karman-project/karman/stage1/internal/trim"
	"github.com/karman-project/karman/stage1/internal/wire"
	"github.com/karman-project/karman/stage1/poddir"
	"golang.org/x/sys/unix"
)

// supervisor is karman-stage1 __stage1-run: it runs in the host's
// namespaces, with the PID systemd or the shell started unless the pod is
// detached, holds the pod lock, forks the init, tees the apps' output,
// records state and turns signals into requests to the init.
type supervisor struct {
	dir   string
	pod   *poddir.Pod
	log   *slog.Logger
	debug bool

	conn       *net.UnixConn // to the init
	notify     string        // $NOTIFY_SOCKET, "" if unset
	relay      *net.UnixConn // NotifySocket, when pod.NotifyApp
	status     map[string]*poddir.AppStatus
	stopping   bool // a stop was asked for (handleSignals)
	tees       sync.WaitGroup
	logsMu     sync.Mutex
	logs       map[string]*logWriter       // the running apps' logs, by app
	cgroups    map[string]poddir.AppCgroup // by app; nil where pods get no cgroups
	cgroupV2   bool                        // the host is cgroup v2 only (Cgroups.V2)
	initCgroup []string                    // Cgroups.Init
	// ios: each app's stdio, for attach sessions (attach.go).
	iosMu    sync.Mutex
	ios      map[string]*appIO
	attachLn *net.UnixListener
	// finished: the pod's end is recorded (finish).
	finished bool
	settled  sync.Once
}

// supervisorMain is the CmdRun entrypoint.
func Main(args []string) int {
	f, err := poddir.ParseSupervisorArgs(args)
	if err != nil {
		return fail(err)
	}
	level := slog.LevelWarn
	if f.Debug {
		level = slog.LevelDebug
	}
	s := &supervisor{
		dir:    f.PodDir,
		debug:  f.Debug,
		log:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("pod", filepath.Base(f.PodDir)),
		notify: os.Getenv("NOTIFY_SOCKET"),
		status: map[string]*poddir.AppStatus{},
	}
	// The lock stays open for the supervisor's whole life, but neither it
	// nor anything else the supervisor inherited may leak into the pod.
	if _, err := unix.FcntlInt(uintptr(f.LockFD), unix.F_GETFD, 0); err != nil {
		return fail(fmt.Errorf("no pod lock on fd %d: %w", f.LockFD, err))
	}
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fail(fmt.Errorf("close-on-exec: %w", err))
	}
	return s.main()
}

// main runs the pod and records its end, and returns its exit status.
func (s *supervisor) main() int {
	code, err := s.run()
	if err != nil {
		code = fail(err)
	}
	if !s.finished {
		s.finish(code)
	}
	s.teardown()
	return code
}

// forkInit forks the pod init: the one place that does. It runs on a
// goroutine locked to a thread of its own, which joins the init's cgroup
// (cgroup, the v1 cpu task files: their membership is per thread) and the
// pod's network namespace (netns, a bind-mounted nsfs file; "": the
// thread's own), forks, and returns to its own network namespace. The
// init's parent-death signal follows that thread, which must therefore
// live as long as the supervisor: it goes back to the runtime's pool, and
// the Go runtime never ends an idle thread. There is one policy for a
// thread that cannot return from the pod's network namespace (a kernel
// failure): the init is killed, the goroutine ends still locked, so that
// the runtime ends the thread rather than run anything else in the pod's
// namespace, and the start fails. The process's main goroutine must be
// locked to the main thread (see SupervisorMain), which the runtime
// cannot end.
func forkInit(cmd initCommand, netns string, cgroup []string) (int, error) {
	type result struct {
		pid int
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		pid, back, err := forkIn(cmd, netns, cgroup)
		if back {
			runtime.UnlockOSThread()
		}
		done <- result{pid, err}
	}()
	r := <-done
	return r.pid, r.err
}

// forkIn is forkInit on the locked thread; back says the thread is where
// it was but for its cgroup.
func forkIn(cmd initCommand, netns string, cgroup []string) (pid int, back bool, err error) {
	if err := joinInitCgroup(cgroup); err != nil {
		return 0, true, err
	}
	if netns == "" {
		pid, err = cmd.start()
		return pid, true, err
	}
	self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, true, fmt.Errorf("own network namespace: %w", err)
	}
	defer unix.Close(self)
	fd, err := unix.Open(netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, true, fmt.Errorf("pod network namespace: %w", err)
	}
	err = unix.Setns(fd, unix.CLONE_NEWNET)
	unix.Close(fd)
	if err != nil {
		return 0, true, fmt.Errorf("join the pod network namespace %s: %w", netns, err)
	}
	pid, err = cmd.start()
	if serr := unix.Setns(self, unix.CLONE_NEWNET); serr != nil {
		if err == nil {
			unix.Kill(pid, unix.SIGKILL)
			waitPID(pid)()
		}
		return 0, false, fmt.Errorf("return to the host network namespace after forking the pod init: %w", serr)
	}
	return pid, true, err
}

// drainWait bounds how long an app's exit waits to be recorded for its
// output to reach its log (appIO.waitDrained).
const drainWait = 2 * time.Second

// teardownTimeout bounds Pod.Teardown.
const teardownTimeout = time.Minute

// teardown runs Pod.Teardown, if any, once the pod has ended; or else
// removes the pod's network namespace, which takes the pod's end of its
// network with it.
func (s *supervisor) teardown() {
	if s.pod == nil || (s.pod.NetNS == "" && len(s.pod.Teardown) == 0) {
		return
	}
	start := time.Now()
	defer func() { s.log.Debug("pod network undone", "elapsed", time.Since(start)) }()
	if len(s.pod.Teardown) == 0 {
		if ns := s.pod.NetNS; ns != "" {
			if err := unix.Unmount(ns, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				s.log.Warn("removing the pod's network namespace; `karman gc` retries it", "err", err)
				return
			}
			os.Remove(ns)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), teardownTimeout)
	defer cancel()
	args := append(s.pod.Teardown[1:len(s.pod.Teardown):len(s.pod.Teardown)], s.dir)
	cmd := exec.CommandContext(ctx, s.pod.Teardown[0], args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		s.log.Warn("pod teardown failed; `karman gc` retries it", "cmd", s.pod.Teardown[0], "err", err)
	}
}

func (s *supervisor) path(rel string) string { return filepath.Join(s.dir, rel) }

// run runs the pod and returns its exit status; an error is a failure of
// karman itself.
//
// The start path is laid out for speed: the init is forked as soon as
// pod.json has been read, and the supervisor's own preparations (state
// files, log pipes, signal handlers) overlap with the init's runtime
// start-up; the boot message then carries the log pipes as SCM_RIGHTS.
func (s *supervisor) run() (int, error) {
	start := time.Now()
	pod, err := poddir.Load(s.dir)
	if err != nil {
		return 0, err
	}
	s.pod = pod
	if err := pod.Runnable(); err != nil {
		return 0, err
	}
	if err := s.loadCgroups(); err != nil {
		return 0, err
	}

	// Enabling a signal costs a round trip to the Go runtime's signal
	// thread: do it beside the init's start. A handled (not ignored)
	// signal is reset to default in children.
	sigc := make(chan os.Signal, 16)
	sigReady := make(chan struct{})
	go func() {
		signal.Notify(sigc, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2,
			unix.SIGWINCH, unix.SIGQUIT, unix.SIGPIPE, poddir.ReopenLogsSignal)
		close(sigReady)
	}()
	defer func() {
		<-sigReady
		signal.Stop(sigc)
	}()

	cmd, initSock, err := s.initCmd()
	if err != nil {
		return 0, err
	}
	type forked struct {
		pid int
		err error
	}
	started := make(chan forked, 1)
	go func() {
		pid, err := forkInit(cmd, pod.NetNS, s.initCgroup)
		started <- forked{pid, err}
	}()
	logPipes, err := s.prepare()
	f := <-started
	initSock.Close()
	if f.err != nil {
		closeFiles(logPipes)
		s.conn.Close()
		return 0, fmt.Errorf("start pod init: %w", f.err)
	}
	proc := initProc{pid: f.pid, wait: waitPID(f.pid)}
	s.log.Debug("init started", "pid", proc.pid, "elapsed", time.Since(start))
	if err == nil {
		err = poddir.WriteFileAtomic(s.path(poddir.InitPID), []byte(strconv.Itoa(proc.pid)+"\n"))
	}
	if err == nil {
		err = s.boot(s.conn, logPipes)
	}
	closeFiles(logPipes) // the init has its own copies now
	if err == nil {
		err = s.sendCgroups(s.conn)
	}
	if err != nil {
		// An init that failed first (in its early setup) said why.
		if msg := s.initError(); msg != "" {
			err = errors.New(msg)
		}
		// The init sees EOF instead of its bootstrap data and exits.
		s.conn.Close()
		proc.wait()
		return 0, err
	}
	<-sigReady
	go s.handleSignals(sigc)

	code, gotExit, initErr := s.serve(start)
	ws, werr := proc.wait()
	s.tees.Wait()
	if s.pod.Interactive {
		s.takeTerminalBack()
	}
	switch {
	case gotExit:
		return code, nil
	case initErr != "":
		return 0, errors.New(initErr)
	}
	// The init died without reporting: killed (Stop's SIGKILL fallback) or
	// crashed.
	if werr == nil {
		if ws.Signaled() {
			s.log.Warn("pod init killed", "signal", unix.SignalName(ws.Signal()))
			return 128 + int(ws.Signal()), nil
		}
		werr = fmt.Errorf("exit status %d", ws.ExitStatus())
	}
	return 0, fmt.Errorf("pod init ended without reporting an exit status: %v", werr)
}

// initError returns the error an init that has already ended reported,
// if any: what its socket still holds.
func (s *supervisor) initError() string {
	buf := make([]byte, wire.MaxPacket)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred)+unix.CmsgSpace(4*4))
	s.conn.SetReadDeadline(time.Now().Add(time.Second))
	for {
		m, _, fds, err := wire.Recv(s.conn, buf, oob)
		wire.CloseAll(fds)
		if err != nil {
			return ""
		}
		if m.T == wire.MsgError {
			return m.Msg
		}
	}
}

// prepare readies the pod directory, the notify relay and the apps' log
// pipes while the init starts; it returns the pipes' write ends.
func (s *supervisor) prepare() ([]*os.File, error) {
	if err := prepareDir(s.dir); err != nil {
		return nil, err
	}
	if s.pod.NotifyApp && s.notify != "" {
		if err := s.startRelay(); err != nil {
			return nil, err
		}
	}
	if err := s.listenAttach(); err != nil {
		return nil, err
	}
	rs, ws, err := s.logPipes()
	if err != nil {
		return nil, err
	}
	if err := s.startTees(rs); err != nil {
		closeFiles(ws)
		return nil, err
	}
	return ws, nil
}

// boot sends the init, over c, its bootstrap data and the apps' log pipes.
func (s *supervisor) boot(c wire.PacketWriter, logPipes []*os.File) error {
	fds := make([]int, len(logPipes))
	for i, f := range logPipes {
		fds[i] = int(f.Fd())
	}
	return wire.SendWithFDs(c, &wire.Message{T: wire.MsgBoot, PodDir: s.dir, Debug: s.debug, Notify: s.relay != nil}, fds)
}

// sendCgroups sends the init, over c, each app's cgroup task files (Tasks
// says how many per app; none where pods get no cgroups).
func (s *supervisor) sendCgroups(c wire.PacketWriter) error {
	tasks, err := s.openTasks()
	defer func() {
		for _, t := range tasks {
			closeFiles(t)
		}
	}()
	if err != nil {
		return err
	}
	var fds []int
	counts := make([]int, len(tasks))
	for i, t := range tasks {
		counts[i] = len(t)
		for _, f := range t {
			fds = append(fds, int(f.Fd()))
		}
	}
	return wire.SendWithFDs(c, &wire.Message{T: wire.MsgCgroups, Tasks: counts, CgroupV2: s.cgroupV2}, fds)
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// prepareDir creates the state and log directories of the pod in dir,
// removes what a previous run may have left and records the supervisor's
// PID.
func prepareDir(dir string) error {
	for _, d := range []string{poddir.AppsState, poddir.LogsDir, poddir.PodRoot} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	for _, f := range []string{poddir.Started, poddir.Finished, poddir.ExitFile, poddir.InitPID, poddir.CtlSocket, poddir.NotifySocket, poddir.AttachSocket} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return poddir.WriteFileAtomic(filepath.Join(dir, poddir.SupervisorPID), []byte(strconv.Itoa(os.Getpid())+"\n"))
}

// initCmd is the command of the pod init, in its new namespaces, with the
// other end of the supervisor socket as its fd 3.
func (s *supervisor) initCmd() (initCommand, *os.File, error) {
	mine, initSock, err := initSocket()
	if err != nil {
		return initCommand{}, nil, err
	}
	if s.conn, err = wire.FileConn(os.NewFile(uintptr(mine), "stage1-sock")); err != nil {
		initSock.Close()
		return initCommand{}, nil, err
	}
	return newInitCommand("/proc/self/exe", s.pod, s.cgroupV2, initSock), initSock, nil
}

// initSocket makes the supervisor socket: the supervisor's end, which
// receives the senders' credentials (SO_PASSCRED: hostPID in serve), and
// the init's. Both are close-on-exec.
func initSocket() (mine int, theirs *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, nil, fmt.Errorf("socketpair: %w", err)
	}
	if err := unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return -1, nil, fmt.Errorf("SO_PASSCRED: %w", err)
	}
	return fds[0], os.NewFile(uintptr(fds[1]), "stage1-sock"), nil
}

// initCommand is how a pod's init starts: from exe in new namespaces
// (with OwnNet a network namespace of its own with only loopback, else
// the forking thread's: the host's, or the one stage0 made that startIn
// joins; the host's PID and IPC namespaces with HostPID and HostIPC),
// with sock as its fd 3 and, for an interactive pod, the caller's stdin.
type initCommand struct {
	exe         string
	interactive bool
	sock        *os.File
	sys         *syscall.SysProcAttr
}

func newInitCommand(exe string, pod *poddir.Pod, cgroupV2 bool, sock *os.File) initCommand {
	flags := unix.CLONE_NEWNS | unix.CLONE_NEWUTS
	if !pod.HostPID {
		flags |= unix.CLONE_NEWPID
	}
	if !pod.HostIPC {
		flags |= unix.CLONE_NEWIPC
	}
	if !cgroupV2 {
		// On v2 each app gets a cgroup namespace of its own, rooted at
		// its cgroup (see launch): the init stays in the caller's, from
		// which the app cgroups are reachable for clone3 (with nsdelegate
		// a cgroup outside the namespace is not).
		flags |= unix.CLONE_NEWCGROUP
	}
	if pod.OwnNet() {
		flags |= unix.CLONE_NEWNET
	}
	// No Pdeathsig here: Go's check of the parent PID after
	// PR_SET_PDEATHSIG kills a child in a new PID namespace (its parent
	// PID reads 0). The init sets it itself.
	return initCommand{exe: exe, interactive: pod.Interactive, sock: sock, sys: &syscall.SysProcAttr{Cloneflags: uintptr(flags)}}
}

// start forks the init from the calling thread and returns its PID. It
// forks with syscall.ForkExec rather than os/exec, whose first start in a
// process forks a test child first (the runtime's probe for pidfd
// support): a process more on every pod's start. The init is reaped by
// PID (waitPID).
func (c initCommand) start() (int, error) {
	stdin := int(os.Stdin.Fd())
	if !c.interactive {
		null, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return 0, fmt.Errorf("open %s: %w", os.DevNull, err)
		}
		defer unix.Close(null)
		stdin = null
	}
	pid, err := syscall.ForkExec(c.exe, []string{poddir.BinaryName, poddir.CmdInit}, &syscall.ProcAttr{
		Env:   initEnv(),
		Files: []uintptr{uintptr(stdin), os.Stdout.Fd(), os.Stderr.Fd(), c.sock.Fd()},
		Sys:   c.sys,
	})
	if err != nil {
		return 0, &os.PathError{Op: "fork/exec", Path: c.exe, Err: err}
	}
	return pid, nil
}

// initEnv is the init's environment: the supervisor's (stage1Env) without
// NOTIFY_SOCKET, which only the supervisor (or its relay) uses.
func initEnv() []string {
	env := os.Environ() // GOMAXPROCS=1 included (stage1.Launch)
	out := env[:0:0]
	for _, e := range env {
		if !strings.HasPrefix(e, "NOTIFY_SOCKET=") {
			out = append(out, e)
		}
	}
	return out
}

// serve handles the init's messages until it closes the socket.
func (s *supervisor) serve(start time.Time) (code int, gotExit bool, initErr string) {
	buf := make([]byte, wire.MaxPacket)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred)+unix.CmsgSpace(4*4))
	ctx := context.Background()
	for {
		m, hostPID, fds, err := wire.Recv(s.conn, buf, oob)
		if m.T != wire.MsgPipes {
			wire.CloseAll(fds) // none expected
		}
		if err != nil {
			if !wire.IsClosed(err) {
				s.log.Warn("reading from pod init", "err", err)
			}
			return code, gotExit, initErr
		}
		switch m.T {
		case wire.MsgLog:
			s.log.Log(ctx, m.Level, m.Msg, append(wire.AttrsAny(m.Attrs), "src", "init")...)
		case wire.MsgError:
			initErr = m.Msg
		case wire.MsgStarted:
			st := s.appStatus(m.App)
			// A start after an exit begins a new run.
			*st = poddir.AppStatus{Name: st.Name, PID: hostPID, Started: m.Time, Restarts: m.Restarts}
			s.saveStatus(st)
		case wire.MsgPipes:
			if err := s.sendPipes(&m, fds); err != nil {
				s.log.Warn("output pipes of an app", "app", m.App, "err", err)
			}
		case wire.MsgRemoved:
			delete(s.status, m.App)
			if err := os.Remove(filepath.Join(s.dir, poddir.AppsState, m.App+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
				s.log.Warn("removing app status", "app", m.App, "err", err)
			}
		case wire.MsgExited:
			s.appIOOf(m.App).waitDrained(drainWait)
			st := s.appStatus(m.App)
			st.Finished, st.Exited, st.ExitCode, st.Signal, st.Reason = m.Time, true, m.Code, m.Signal, m.Reason
			if m.Code == 128+int(unix.SIGKILL) && s.oomKilled(m.App) {
				st.Reason = "oom-killed"
			}
			s.saveStatus(st)
		case wire.MsgReady:
			s.log.Debug("pod started", "elapsed", time.Since(start))
			if err := poddir.WriteFileAtomic(s.path(poddir.Started), []byte(time.Now().Format(time.RFC3339Nano)+"\n")); err != nil {
				s.log.Warn("recording start", "err", err)
			}
			if !s.pod.NotifyApp && s.notify != "" {
				if err := sdNotify(s.notify, "READY=1"); err != nil {
					s.log.Warn("sd_notify", "err", err)
				}
			}
			time.AfterFunc(trim.Delay, s.settle)
		case wire.MsgExit:
			code, gotExit = m.Code, true
			// Recorded at once, while the init exits and the kernel
			// tears down its namespaces; the pod counts as ended only
			// once this process releases its lock.
			s.finish(code)
		default:
			s.log.Warn("unknown message from pod init", "type", m.T)
		}
	}
}

// settle trims the supervisor's memory, once (trim.Maps.Settle).
func (s *supervisor) settle() {
	s.settled.Do(func() { trim.Open().Settle() })
}

func (s *supervisor) appStatus(name string) *poddir.AppStatus {
	st := s.status[name]
	if st == nil {
		st = &poddir.AppStatus{Name: name}
		s.status[name] = st
	}
	return st
}

func (s *supervisor) saveStatus(st *poddir.AppStatus) {
	if err := poddir.WriteJSONAtomic(filepath.Join(s.dir, poddir.AppsState, st.Name+".json"), st); err != nil {
		s.log.Warn("recording app status", "app", st.Name, "err", err)
	}
}

// finish records the pod's end and removes its sockets. The pod's cgroups
// stay until the pod is collected (gc or rm), like the rest of it: status
// can still read them, and the exit path stays short.
func (s *supervisor) finish(code int) {
	s.finished = true
	if s.relay != nil {
		s.relay.Close()
	}
	if s.attachLn != nil {
		s.attachLn.Close()
	}
	os.Remove(s.path(poddir.CtlSocket))
	os.Remove(s.path(poddir.NotifySocket))
	os.Remove(s.path(poddir.AttachSocket))
	if _, err := os.Stat(s.path(poddir.StateDir)); err != nil {
		return // not even prepared
	}
	if err := poddir.WriteFileAtomic(s.path(poddir.ExitFile), []byte(strconv.Itoa(code)+"\n")); err != nil {
		s.log.Warn("recording exit status", "err", err)
	}
	if err := poddir.WriteFileAtomic(s.path(poddir.Finished), []byte(time.Now().Format(time.RFC3339Nano)+"\n")); err != nil {
		s.log.Warn("recording end", "err", err)
	}
}

// initProc is the pod init as its parent, the supervisor, sees it.
type initProc struct {
	pid  int
	wait func() (unix.WaitStatus, error) // reaps it
}

// waitPID reaps the child pid, waiting for it to end. The init is waited
// for by PID (wait4) rather than as an os.Process, whose first use costs
// a Go program a test fork (the runtime's pidfd probe).
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

// fail prints the one-line runtime error and returns its status.
func fail(err error) int { return multicall.Fail(os.Stderr, err) }
