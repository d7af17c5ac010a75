package stage1

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/karman-project/karman/stage1/poddir"
	"golang.org/x/sys/unix"
)

// trapApp traps sig, says "ready" and waits forever; on sig it runs
// action.
func trapApp(name, sig, action string) poddir.App {
	return sh(name, "trap '"+action+"' "+sig+"; echo ready; while :; do sleep 1000 & wait; done")
}

func TestStopBySIGTERM(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{unix.SIGTERM, unix.SIGINT} {
		t.Run(unix.SignalName(sig), func(t *testing.T) {
			t.Parallel()
			p := newPod(t, nil, trapApp("app", "TERM", "echo bye; exit 0"))
			p.start()
			p.waitLog("app", "ready")
			p.signal(sig)
			p.expect(p.wait(), 0)
			if !strings.Contains(p.log("app"), "bye") {
				t.Errorf("the app did not get SIGTERM: %q", p.log("app"))
			}
		})
	}
}

// TestStopTimeout: an app that ignores SIGTERM is killed after the stop
// timeout, and so is everything else in the pod.
func TestStopTimeout(t *testing.T) {
	t.Parallel()
	p := newPod(t, func(p *poddir.Pod) { p.StopTimeout = 2 * time.Second },
		trapApp("app", "TERM", ""), trapApp("other", "TERM", "exit 0"))
	p.start()
	p.waitLog("app", "ready")
	p.waitLog("other", "ready")
	p.signal(unix.SIGTERM)
	p.expect(p.wait(), 137)
	st := p.appStatus()
	if st[0].Signal != "SIGKILL" || st[1].ExitCode != 0 {
		t.Errorf("app status = %+v", st)
	}
}

// TestSecondSIGINTKills: a second ^C does not wait for the timeout.
func TestSecondSIGINTKills(t *testing.T) {
	t.Parallel()
	p := newPod(t, func(p *poddir.Pod) { p.StopTimeout = time.Hour }, trapApp("app", "TERM", "echo term"))
	p.start()
	p.waitLog("app", "ready")
	p.signal(unix.SIGINT)
	p.waitLog("app", "term")
	p.signal(unix.SIGINT)
	p.expect(p.wait(), 137)
}

func TestStop(t *testing.T) {
	t.Parallel()
	t.Run("graceful", func(t *testing.T) {
		t.Parallel()
		p := newPod(t, nil, trapApp("app", "TERM", "exit 0"))
		p.start()
		p.waitLog("app", "ready")
		if err := Stop(p.dir, false); err != nil {
			t.Fatal(err)
		}
		p.expect(p.wait(), 0)
		if err := Stop(p.dir, false); !errors.Is(err, ErrNotRunning) {
			t.Errorf("Stop of an ended pod: %v, want ErrNotRunning", err)
		}
	})
	t.Run("force", func(t *testing.T) {
		t.Parallel()
		p := newPod(t, func(p *poddir.Pod) { p.StopTimeout = time.Hour }, trapApp("app", "TERM", ""))
		p.start()
		p.waitLog("app", "ready")
		if err := Stop(p.dir, true); err != nil {
			t.Fatal(err)
		}
		p.expect(p.wait(), 137)
		if got := strings.TrimSpace(readFile(t, filepath.Join(p.dir, poddir.ExitFile))); got != "137" {
			t.Errorf("state/exit = %q", got)
		}
	})
	t.Run("fallback-to-supervisor", func(t *testing.T) {
		t.Parallel()
		p := newPod(t, nil, trapApp("app", "TERM", "exit 0"))
		p.start()
		p.waitLog("app", "ready")
		// Without the control socket, Stop signals the supervisor.
		if err := os.Remove(filepath.Join(p.dir, poddir.CtlSocket)); err != nil {
			t.Fatal(err)
		}
		if err := Stop(p.dir, false); err != nil {
			t.Fatal(err)
		}
		p.expect(p.wait(), 0)
	})
}

func TestSignalForwarding(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		sig  syscall.Signal
		name string
	}{{unix.SIGHUP, "HUP"}, {unix.SIGUSR1, "USR1"}, {unix.SIGUSR2, "USR2"}, {unix.SIGQUIT, "QUIT"}, {unix.SIGWINCH, "WINCH"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newPod(t, nil, trapApp("app", tc.name, "exit 42"))
			p.start()
			p.waitLog("app", "ready")
			p.signal(tc.sig)
			p.expect(p.wait(), 42)
		})
	}
}

// TestReapsOrphans: orphans re-parented to the pod init are reaped.
func TestReapsOrphans(t *testing.T) {
	t.Parallel()
	p := newPod(t, nil, sh("app", "for i in 1 2 3 4 5; do (true &); (sh -c 'exit 3' &); done; echo spawned; exec sleep 1000"))
	p.start()
	p.waitLog("app", "spawned")
	initPID := p.initPID()
	// The orphans exit at once; once they are reaped the init has one
	// child left, the app. An init that does not reap keeps zombies.
	var kids map[int]string
	p.waitFor("the orphans to be reaped", func() bool {
		kids = processesOf(t, initPID)
		return len(kids) == 1
	})
	for pid, state := range kids {
		if state == "Z" {
			t.Errorf("zombie %d", pid)
		}
	}
	p.signal(unix.SIGTERM)
	p.expect(p.wait(), 143)
}

// TestSupervisorKilled: SIGKILL to the supervisor takes the whole pod
// down and leaves nothing mounted in the host.
func TestSupervisorKilled(t *testing.T) {
	t.Parallel()
	p := newPod(t, nil, sh("app", "sleep 1000 & sleep 1000 & echo ready; wait"), sh("other", "exec sleep 1000"))
	p.start()
	p.waitLog("app", "ready")
	p.waitStarted()
	initPID := p.initPID()
	var pids []int
	for _, st := range p.appStatus() {
		if st.PID <= 0 {
			t.Fatalf("app status without PID: %+v", st)
		}
		pids = append(pids, st.PID)
	}
	pids = append(pids, initPID)
	for pid := range processesOf(t, pids[0]) {
		pids = append(pids, pid) // the app's sleeps
	}
	if len(pids) != 5 {
		t.Fatalf("pod processes %v, want 2 apps, 2 sleeps and the init", pids)
	}
	p.signal(unix.SIGKILL)
	<-p.exited
	// The init was re-parented to this test (a subreaper): reap it.
	var ws unix.WaitStatus
	if _, err := unix.Wait4(initPID, &ws, 0, nil); err != nil {
		t.Fatalf("wait for the init: %v", err)
	}
	// Killed by its parent-death signal, or exited on seeing the
	// supervisor's end of the socket close (which happens first).
	if !(ws.Signaled() && ws.Signal() == unix.SIGKILL) && ws.ExitStatus() != poddir.ExitRuntimeError {
		t.Errorf("init ended with %v, want SIGKILL or 254", ws)
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, 0); !errors.Is(err, unix.ESRCH) {
			t.Errorf("process %d of the pod survives (%v)", pid, err)
		}
	}
	if m := mountsUnder(t, filepath.Dir(p.dir)); len(m) != 0 {
		t.Errorf("mounts left in the host: %v", m)
	}
	if m := mountsUnder(t, images.dir); len(m) != 0 {
		t.Errorf("mounts left in the host: %v", m)
	}
}

func TestAppStatusFiles(t *testing.T) {
	t.Parallel()
	p := newPod(t, nil, poddir.App{Name: "app", Args: []string{"sleep", "1000"}})
	p.start()
	p.waitStarted()
	b, err := os.ReadFile(filepath.Join(p.dir, poddir.AppsState, "app.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st poddir.AppStatus
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if st.Exited || st.PID <= 0 || st.Started.IsZero() {
		t.Fatalf("status of a running app: %+v", st)
	}
	// The PID is the host's: its command line is the app's.
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(st.PID), "cmdline"))
	if err != nil || !strings.HasPrefix(string(cmdline), "sleep\x001000") {
		t.Errorf("pid %d runs %q (%v), want sleep 1000", st.PID, cmdline, err)
	}
	p.signal(unix.SIGTERM)
	p.expect(p.wait(), 143)
}
