package stage1

import (
	"os"
	"strings"
	"syscall"
	"testing"
)

const handedOver = "handing the pod to the lean supervisor"

// TestHandOff: Exec supervises a booted pod in the calling process (as
// karman does), and hands a pod that runs on to the supervisor binary
// (--resumed), which keeps the apps' status, output and exit status; a
// pod that ends sooner, or that is stopping, stays where it is.
func TestHandOff(t *testing.T) {
	t.Run("ends in place", func(t *testing.T) {
		t.Parallel()
		p := newPod(t, nil, sh("app", "echo hi; exit 3"))
		p.startLikeStage0(handoffTestEnv + "=1m")
		p.expect(p.wait(), 3)
		if out := p.stdout(); strings.Contains(out, handedOver) || !strings.Contains(out, "hi") {
			t.Errorf("want the app's output and no hand-over; got:\n%s", out)
		}
		if st := p.appStatus(); len(st) != 1 || !st[0].Exited || st[0].ExitCode != 3 || st[0].PID == 0 {
			t.Errorf("app status %+v", st)
		}
	})
	for _, tc := range []struct{ name, delay string }{
		// Before the init's first report, which the new supervisor
		// then reads; and after the app's start, whose status the new
		// supervisor must keep (its PID and start time).
		{"handed over at once", "1ns"},
		{"handed over after the start", "150ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newPod(t, nil, sh("app", "echo before; sleep 0.5; echo after >&2; exit 7"))
			p.startLikeStage0(handoffTestEnv + "=" + tc.delay)
			p.waitFor("the hand-over", func() bool {
				b, _ := os.ReadFile("/proc/" + itoa(p.cmd.Process.Pid) + "/cmdline")
				return strings.Contains(string(b), "\x00--resumed\x00")
			})
			p.expect(p.wait(), 7)
			out := p.stdout()
			for _, want := range []string{handedOver, "before\n", "after\n"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if log := p.log("app"); log != "before\nafter\n" {
				t.Errorf("app log %q", log)
			}
			st := p.appStatus()
			if len(st) != 1 || !st[0].Exited || st[0].ExitCode != 7 || st[0].PID == 0 || st[0].Started.IsZero() || st[0].Finished.Before(st[0].Started) {
				t.Errorf("app status %+v", st)
			}
		})
	}
	t.Run("handed over while writing", func(t *testing.T) {
		t.Parallel()
		// The output copies stop between two chunks and the new
		// supervisor's pick up what waits in the pipes: nothing is lost
		// or doubled.
		p := newPod(t, nil, sh("app", "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done; sleep 0.2"))
		p.startLikeStage0(handoffTestEnv + "=20ms")
		p.expect(p.wait(), 0)
		lines := strings.Split(strings.TrimSuffix(p.log("app"), "\n"), "\n")
		if len(lines) != 3000 {
			t.Fatalf("%d lines in the log, want 3000", len(lines))
		}
		for i, l := range lines {
			if l != "line "+itoa(i) {
				t.Fatalf("log line %d is %q", i, l)
			}
		}
		if !strings.Contains(p.stdout(), handedOver) {
			t.Errorf("no hand-over:\n%s", p.stdout())
		}
	})
	t.Run("init fails before the hand-over", func(t *testing.T) {
		t.Parallel()
		// The init reports its failure, then lingers past the hand-over
		// time before it exits: the pod ends here, with that report.
		p := newPod(t, func(p *Pod) { p.Apps[0].Mounts = []Mount{{Source: "/no/such/source", Target: "/x"}} }, sh("app", "true"))
		p.startLikeStage0(handoffTestEnv+"=100ms", errorExitTestEnv+"=400ms")
		p.expect(p.wait(), ExitRuntimeError)
		out := p.stdout()
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if last := lines[len(lines)-1]; strings.Contains(out, handedOver) || !strings.HasPrefix(last, "karman: ") || !strings.Contains(last, "/no/such/source") {
			t.Errorf("want the init's error and no hand-over; got:\n%s", out)
		}
	})
	t.Run("stopping in place", func(t *testing.T) {
		t.Parallel()
		p := newPod(t, nil, trapApp("app", "TERM", "echo stopped; exit 0"))
		p.startLikeStage0(handoffTestEnv + "=1m")
		p.waitLog("app", "ready")
		p.signal(syscall.SIGTERM)
		p.expect(p.wait(), 0)
		if out := p.stdout(); strings.Contains(out, handedOver) || !strings.Contains(out, "stopped") {
			t.Errorf("want a graceful stop and no hand-over; got:\n%s", out)
		}
	})
}
