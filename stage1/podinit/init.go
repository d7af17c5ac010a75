package podinit

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
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

// podInit is PID 1 of the pod: it sets up the pod's root, starts the
// apps, reaps every process of the pod and reports to the supervisor.
type podInit struct {
	pod    *poddir.Pod
	dir    string
	log    *slog.Logger
	sup    *net.UnixConn
	notify bool // bind the supervisor's notify relay into the apps

	ctl *net.UnixListener
	// apps are the pod's apps; the main loop changes the slice (app add
	// and rm), under appsMu, which others read it under.
	apps   []*appProc
	appsMu sync.RWMutex
	// addMu serializes the mounting and unmounting of apps in the
	// running pod (addApp, removeApp): the pod root is writable meanwhile.
	addMu sync.Mutex
	// pipesMu serializes requests for log pipes (MsgPipes), whose replies
	// arrive on pipesC.
	pipesMu sync.Mutex
	pipesC  chan []int

	// mu makes fork + registration atomic with respect to wait4, so that
	// the reaper never reaps a child it does not know yet.
	mu       sync.Mutex
	children map[int]func(unix.WaitStatus)

	// Owned by the main loop.
	running  int
	stopping bool
	killC    <-chan time.Time
	events   chan event
	done     chan struct{} // closed when the main loop has ended
	sigReady chan struct{} // closed when the signal handlers are installed
	logFDs   []int         // from the boot message: stdout, stderr of each app
	exe      *trim.Maps
	tasks    [][]int // from the boot message: each app's cgroup task files
	cgroupV2 bool    // tasks holds each app's cgroup2 directory instead
	empty    string  // the pod root's empty read-only directory
	// propagating are the clones of the volumes that propagate, made
	// before the init's mounts became private (clonePropagating).
	propagating map[volKey]int
	// procDir is the host's /proc, of a pod in the host's PID namespace
	// (hostpid.go).
	procDir int
}

// event is a request to the main loop from the supervisor or the control
// socket.
type event struct {
	stop, force bool
	sig         syscall.Signal
	gone        bool   // the supervisor is gone
	do          func() // an app request, run on the main loop
}

// appProc is one app as the init runs it.
type appProc struct {
	app            *poddir.App
	root           *root  // its root directory, /apps/<name> after the pivot
	rootPath       string // idem, as a path
	stdout, stderr int    // the init's copies, closed once started
	// stdin, when not -1, is the read end of the app's stdin pipe
	// (App.Stdin), or the slave of its pseudo-terminal (App.TTY, then
	// its stdout and stderr too); closed once started.
	stdin    int
	tasks    []int // its cgroup task files, or (v2) its cgroup2 directory
	pid      int
	started  bool
	exited   bool
	code     int
	restarts int           // starts after the first
	runs     int           // starts so far
	exitedC  chan struct{} // closed when the current run has ended
}

// initMain is the CmdInit entrypoint.
func Main(_ []string) int {
	// CVE-2019-5736: nothing in the pod may open /proc/1/exe (the karman
	// binary) or our memory. This comes before any app exists.
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	// The supervisor's death must take the pod down. Go's own Pdeathsig
	// cannot be used across a new PID namespace (see initCmd); a
	// supervisor that died before this line is noticed as EOF on fd 3.
	unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
	// Enabling a signal costs a round trip to the Go runtime's signal
	// thread: the handlers are installed beside the setup, and the apps
	// start only once they are.
	chld := make(chan os.Signal, 1)
	sigc := make(chan os.Signal, 16)
	sigReady := make(chan struct{})
	go func() {
		signal.Notify(chld, unix.SIGCHLD)
		signal.Notify(sigc, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2,
			unix.SIGWINCH, unix.SIGQUIT, unix.SIGPIPE)
		close(sigReady)
	}()
	// The setup creates files and devices with exact modes; the apps get
	// the usual 022 (see run).
	unix.Umask(0)
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fail(fmt.Errorf("pod init: %w", err))
	}
	sup, err := wire.FileConn(os.NewFile(wire.InitSockFD, "stage1-sock"))
	if err != nil {
		return fail(fmt.Errorf("pod init: %w", err))
	}
	in := &podInit{
		sup:      sup,
		children: map[int]func(unix.WaitStatus){},
		events:   make(chan event, 16),
		done:     make(chan struct{}),
		sigReady: sigReady,
		pipesC:   make(chan []int, 1),
	}
	code, err := in.run(chld, sigc)
	if err != nil {
		wire.Send(sup, &wire.Message{T: wire.MsgError, Msg: err.Error()}, nil)
		return poddir.ExitRuntimeError
	}
	return code
}

func (in *podInit) run(chld, sigc <-chan os.Signal) (int, error) {
	buf := make([]byte, wire.MaxPacket)
	oob := make([]byte, unix.CmsgSpace(wire.MaxFDs*4))
	boot, _, fds, err := wire.Recv(in.sup, buf, oob)
	if err != nil || boot.T != wire.MsgBoot {
		wire.CloseAll(fds)
		return 0, fmt.Errorf("pod init: no bootstrap data (%v)", err)
	}
	in.logFDs = fds
	if err := in.begin(boot); err != nil {
		return 0, err
	}
	if !in.pod.Interactive {
		if in.logFDs, err = wire.RecvMoreFDs(in.sup, in.logFDs, 2*len(in.pod.Apps)); err != nil {
			return 0, fmt.Errorf("pod init: the apps' output pipes: %w", err)
		}
	}
	if err := in.attachLogs(); err != nil {
		return 0, err
	}
	if err := in.recvCgroups(buf); err != nil {
		return 0, err
	}
	go in.readSupervisor()

	<-in.sigReady
	unix.Umask(0o022)
	for _, a := range in.apps {
		in.startApp(a)
	}
	if err := wire.Send(in.sup, &wire.Message{T: wire.MsgReady}, nil); err != nil {
		return 0, err
	}
	go in.serveCtl()
	time.AfterFunc(trim.Delay, in.exe.Settle)
	return in.loop(chld, sigc), nil
}

// begin reads the pod that the boot message m names and mounts it.
func (in *podInit) begin(m wire.Message) error {
	level := slog.LevelInfo
	if m.Debug {
		level = slog.LevelDebug
	}
	in.log = slog.New(wire.NewSockHandler(in.sup, level))
	in.dir, in.notify = m.PodDir, m.Notify
	pod, err := poddir.Load(in.dir)
	if err != nil {
		return err
	}
	in.pod = pod
	in.exe = trim.Open() // while /proc is reachable
	if pod.HostPID {
		if err := in.hostProc(); err != nil {
			return err
		}
	}
	return in.setup()
}

// attachLogs gives each app the write ends of its stdout and stderr
// pipes, which came with the boot message (none for an interactive pod).
func (in *podInit) attachLogs() error {
	if in.pod.Interactive {
		return nil
	}
	if len(in.logFDs) != 2*len(in.apps) {
		return fmt.Errorf("got %d log pipes for %d apps", len(in.logFDs), len(in.apps))
	}
	for i, a := range in.apps {
		a.stdout, a.stderr = in.logFDs[2*i], in.logFDs[2*i+1]
	}
	return nil
}

// loop runs until every app has exited (with Pod.KeepAlive: until the pod
// was asked to stop and every app has exited) and returns the pod's
// status.
func (in *podInit) loop(chld, sigc <-chan os.Signal) int {
	defer close(in.done)
	for in.running > 0 || in.pod.KeepAlive && !in.stopping {
		select {
		case <-chld:
			in.reap()
		case sig := <-sigc:
			switch sig {
			case unix.SIGPIPE:
			case unix.SIGTERM, unix.SIGINT:
				in.stop(false)
			default:
				in.forward(sig.(syscall.Signal))
			}
		case ev := <-in.events:
			switch {
			case ev.gone:
				// Nobody is left to report to: take the pod down now.
				in.killAll(unix.SIGKILL)
				os.Exit(poddir.ExitRuntimeError)
			case ev.do != nil:
				ev.do()
			case ev.stop:
				in.stop(ev.force)
			default:
				in.forward(ev.sig)
			}
		case <-in.killC:
			in.log.Debug("stop timeout: killing the pod")
			in.killC = nil
			in.killAll(unix.SIGKILL)
		}
	}
	if in.pod.HostPID {
		// What the apps left running ends with the pod, as the end of
		// a PID namespace's init would end it.
		in.killAll(unix.SIGKILL)
		in.reap()
	}
	code := podExitCode(in.apps)
	if err := wire.Send(in.sup, &wire.Message{T: wire.MsgExit, Code: code}, nil); err != nil {
		in.log.Warn("reporting exit status", "err", err)
	}
	return code
}

// podExitCode is the status of the first app in pod order that did not
// exit 0 (a signal N counting as 128+N), else 0. For one app it is that
// app's status.
func podExitCode(apps []*appProc) int {
	for _, a := range apps {
		if a.code != 0 {
			return a.code
		}
	}
	return 0
}

// reap collects every child that has exited: apps, enter sessions and
// orphans that were re-parented to us.
func (in *podInit) reap() {
	for {
		var ws unix.WaitStatus
		in.mu.Lock()
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		var f func(unix.WaitStatus)
		if pid > 0 {
			f = in.children[pid]
			delete(in.children, pid)
		}
		in.mu.Unlock()
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if pid <= 0 {
			return
		}
		if f != nil {
			f(ws)
		} else {
			in.log.Debug("reaped orphan", "pid", pid)
		}
	}
}

// appExited records an app's end. It runs on the main loop.
func (in *podInit) appExited(a *appProc, ws unix.WaitStatus) {
	code, sig := waitCode(ws)
	a.exited, a.code = true, code
	in.running--
	if a.exitedC != nil {
		close(a.exitedC)
		a.exitedC = nil
	}
	m := &wire.Message{T: wire.MsgExited, App: a.app.Name, Time: time.Now(), Code: code}
	if sig != 0 {
		m.Signal, m.Reason = unix.SignalName(sig), "killed by "+unix.SignalName(sig)
	}
	in.log.Debug("app exited", "app", a.app.Name, "code", code, "signal", m.Signal)
	if err := wire.Send(in.sup, m, nil); err != nil {
		in.log.Warn("reporting app exit", "app", a.app.Name, "err", err)
	}
}

// waitCode is the shell's view of a wait status: the exit code, or 128+N
// for a death by signal N.
func waitCode(ws unix.WaitStatus) (int, syscall.Signal) {
	if ws.Signaled() {
		return 128 + int(ws.Signal()), ws.Signal()
	}
	return ws.ExitStatus(), 0
}

// stop asks the apps to end: SIGTERM now, SIGKILL to the whole pod after
// the stop timeout. force kills at once.
func (in *podInit) stop(force bool) {
	if force {
		in.stopping = true
		in.log.Debug("killing the pod")
		in.killAll(unix.SIGKILL)
		return
	}
	if in.stopping {
		return
	}
	in.stopping = true
	timeout := in.pod.StopTimeout
	if timeout <= 0 {
		timeout = poddir.DefaultStopTimeout
	}
	in.log.Debug("stopping the pod", "timeout", timeout)
	in.forward(unix.SIGTERM)
	in.killC = time.After(timeout)
}

// forward sends sig to every app still running.
func (in *podInit) forward(sig syscall.Signal) {
	for _, a := range in.apps {
		if a.started && !a.exited {
			if err := unix.Kill(a.pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
				in.log.Warn("signalling app", "app", a.app.Name, "signal", unix.SignalName(sig), "err", err)
			}
		}
	}
}

// readSupervisor turns the supervisor's requests into events.
func (in *podInit) readSupervisor() {
	buf := make([]byte, wire.MaxPacket)
	oob := make([]byte, unix.CmsgSpace(3*4))
	for {
		m, _, fds, err := wire.Recv(in.sup, buf, oob)
		if err == nil && m.T == wire.MsgPipes {
			in.pipesC <- fds
			continue
		}
		wire.CloseAll(fds) // none expected
		var ev event
		switch {
		case err != nil:
			if !wire.IsClosed(err) {
				in.log.Warn("reading from supervisor", "err", err)
				continue
			}
			ev.gone = true
		case m.T == wire.MsgStop:
			ev.stop, ev.force = true, m.Force
		case m.T == wire.MsgSignal:
			ev.sig = syscall.Signal(m.Sig)
		default:
			in.log.Warn("unknown message from supervisor", "type", m.T)
			continue
		}
		if !in.post(ev) || ev.gone {
			return
		}
	}
}

// post hands ev to the main loop; false once the loop has ended.
func (in *podInit) post(ev event) bool {
	select {
	case in.events <- ev:
		return true
	case <-in.done:
		return false
	}
}

// hostname is the pod's host name.
func (in *podInit) hostname() string {
	switch {
	case in.pod.Hostname != "":
		return in.pod.Hostname
	case in.pod.Name != "":
		return in.pod.Name
	case len(in.pod.UUID) >= 8:
		return "karman-" + strings.ToLower(in.pod.UUID[:8])
	}
	return "karman"
}

// recvCgroups receives each app's cgroup task files, which the
// supervisor sends once it has made the cgroups.
func (in *podInit) recvCgroups(buf []byte) error {
	m, _, fds, err := wire.Recv(in.sup, buf, make([]byte, unix.CmsgSpace(wire.MaxFDs*4)))
	if err != nil || m.T != wire.MsgCgroups {
		wire.CloseAll(fds)
		return fmt.Errorf("pod init: no cgroups from the supervisor (%v)", err)
	}
	if fds, err = wire.RecvMoreFDs(in.sup, fds, sum(m.Tasks)); err != nil {
		return fmt.Errorf("pod init: cgroup descriptors: %w", err)
	}
	if sum(m.Tasks) != len(fds) || len(m.Tasks) > 0 && len(m.Tasks) != len(in.pod.Apps) {
		wire.CloseAll(fds)
		return fmt.Errorf("pod init: %d cgroup descriptors for %v task files", len(fds), m.Tasks)
	}
	for _, n := range m.Tasks {
		if m.CgroupV2 && n != 1 {
			wire.CloseAll(fds)
			return fmt.Errorf("pod init: %v cgroup2 directories, want one per app", m.Tasks)
		}
		in.tasks = append(in.tasks, fds[:n])
		fds = fds[n:]
	}
	for i, a := range in.apps {
		if i < len(in.tasks) {
			a.tasks = in.tasks[i]
		}
	}
	in.cgroupV2 = m.CgroupV2
	return nil
}

func sum(ns []int) int {
	t := 0
	for _, n := range ns {
		t += n
	}
	return t
}

// fail prints the one-line runtime error and returns its status.
func fail(err error) int { return multicall.Fail(os.Stderr, err) }
