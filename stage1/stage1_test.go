package stage1

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/karman-project/karman/stage1/poddir"
	"golang.org/x/sys/unix"
)

// TestLaunch runs a pod the way stage0 does: a process locks the pod
// directory and launches the supervisor (Launch), which keeps the lock
// until the pod has ended; in the foreground it is the launching process
// (same PID).
func TestLaunch(t *testing.T) {
	t.Parallel()
	inEachStage0Mode(t, "echo ready; exec sleep 1000", func(t *testing.T, p *testPod) {
		pid := strings.TrimSpace(readFile(t, p.dir+"/"+poddir.SupervisorPID))
		if p.mode != "detached" && pid != itoa(p.cmd.Process.Pid) {
			t.Errorf("supervisor pid %s, want the launching process %d", pid, p.cmd.Process.Pid)
		}
		if held, err := locked(p.dir); err != nil || !held {
			t.Errorf("the pod lock is not held while the pod runs (%v)", err)
		}
		if err := Stop(p.dir, false); err != nil {
			t.Fatal(err)
		}
		p.expect(p.wait(), 143)
		if held, err := locked(p.dir); err != nil || held {
			t.Errorf("the pod lock is still held (%v)", err)
		}
	})
}

// stage0Modes are the ways stage0 hands a pod to stage1, for
// startLikeStage0: Launch in the foreground (the launching process execs
// the supervisor) and detached (a child of it, which it waits for).
var stage0Modes = []string{"foreground", "detached"}

// inEachStage0Mode runs f, in parallel subtests, on a pod of one app
// "app" running script, started in each of stage0Modes, once the app has
// written "ready".
func inEachStage0Mode(t *testing.T, script string, f func(t *testing.T, p *testPod)) {
	for _, mode := range stage0Modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			p := newPod(t, nil, sh("app", script))
			p.startLikeStage0(mode)
			p.waitLog("app", "ready")
			f(t, p)
		})
	}
}

// TestNoLeakedDescriptors: apps get stdin, stdout and stderr only; the
// pod lock stays in the supervisor.
func TestNoLeakedDescriptors(t *testing.T) {
	t.Parallel()
	got := lines(t, nil, poddir.App{Name: "app", Args: []string{"ls", "/proc/self/fd"}})
	if strings.Join(got, " ") != "0 1 2 3" { // 3 is ls's own directory
		t.Errorf("app descriptors: %q", got)
	}
}

func TestSupervisorFailsCleanly(t *testing.T) {
	t.Parallel()
	p := newPod(t, func(p *poddir.Pod) { p.Apps[0].Mounts = []poddir.Mount{{Source: "/no/such/source", Target: "/x"}} }, sh("app", "true"))
	p.expect(p.run(), poddir.ExitRuntimeError)
	lines := strings.Split(strings.TrimSpace(p.stderr()), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "karman: ") || !strings.Contains(last, "/no/such/source") {
		t.Errorf("stderr = %q", p.stderr())
	}
	if got := strings.TrimSpace(readFile(t, p.dir+"/"+poddir.ExitFile)); got != "254" {
		t.Errorf("state/exit = %q", got)
	}
}

// TestOutputKept: what an app writes reaches both the log and the
// supervisor's stdout in full, however much more than a pipe buffer it is.
func TestOutputKept(t *testing.T) {
	t.Parallel()
	bothStarts(t, func(t *testing.T, viaExec bool) {
		t.Parallel()
		const n = 300 << 10
		p := newPod(t, nil, sh("app", "head -c 307200 /dev/zero | tr '\\0' x"))
		p.viaExec = viaExec
		p.expect(p.run(), 0)
		want := strings.Repeat("x", n)
		if got := p.log("app"); got != want {
			t.Errorf("log: %d bytes, want %d x", len(got), n)
		}
		if got := p.stdout(); got != want {
			t.Errorf("stdout: %d bytes, want %d x", len(got), n)
		}
	})
}

// TestOutputPipeModes: an app's stdout and stderr are blocking, as
// programs expect, while the supervisor's ends of those pipes are
// non-blocking, so that its tees wait in the runtime's poller instead of
// holding a thread each, in every way a pod starts.
func TestOutputPipeModes(t *testing.T) {
	t.Parallel()
	inEachStage0Mode(t, "grep -h flags /proc/self/fdinfo/1 /proc/self/fdinfo/2; echo ready; exec sleep 1000", func(t *testing.T, p *testPod) {
		var appFlags []string
		for _, l := range strings.Split(p.log("app"), "\n") {
			if v, ok := strings.CutPrefix(l, "flags:"); ok {
				appFlags = append(appFlags, strings.TrimSpace(v))
			}
		}
		if len(appFlags) != 2 {
			t.Fatalf("the app's fdinfo flags of stdout and stderr: %q", p.log("app"))
		}
		for i, f := range appFlags {
			if fdFlags(t, f)&unix.O_NONBLOCK != 0 {
				t.Errorf("the app's fd %d is non-blocking (flags %s)", i+1, f)
			}
		}
		sup, _ := strconv.Atoi(strings.TrimSpace(readFile(t, p.dir+"/"+poddir.SupervisorPID)))
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", sup))
		if err != nil {
			t.Fatal(err)
		}
		readEnds := 0
		for _, e := range ents {
			link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", sup, e.Name()))
			if !strings.HasPrefix(link, "pipe:") {
				continue
			}
			info := readFile(t, fmt.Sprintf("/proc/%d/fdinfo/%s", sup, e.Name()))
			_, rest, _ := strings.Cut(info, "flags:")
			fl := fdFlags(t, strings.Fields(rest)[0])
			if fl&unix.O_ACCMODE != unix.O_RDONLY {
				continue
			}
			readEnds++
			if fl&unix.O_NONBLOCK == 0 {
				t.Errorf("the supervisor's fd %s, %s, is blocking", e.Name(), link)
			}
		}
		if readEnds != 2 {
			t.Errorf("the supervisor holds %d read ends of pipes, want the app's stdout and stderr", readEnds)
		}
		if err := Stop(p.dir, false); err != nil {
			t.Fatal(err)
		}
		p.expect(p.wait(), 143)
	})
}

func fdFlags(t *testing.T, octal string) int {
	t.Helper()
	v, err := strconv.ParseInt(octal, 8, 64)
	if err != nil {
		t.Fatalf("fdinfo flags %q: %v", octal, err)
	}
	return int(v)
}
