package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/karman-project/karman/stage0"
)

// waitState polls the pod's status until f accepts it.
func (e *podEnv) waitState(t *testing.T, uuid, what string, f func(stage0.PodInfo) bool) stage0.PodInfo {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		pi := e.status(t, uuid)
		if f(pi) {
			return pi
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s: %s: not reached in 30s: %+v", uuid, what, pi)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRunNoApps: `run --no-apps` starts a pod of no apps in the
// background, saves and prints its UUID, and the pod runs until stopped;
// images given with --no-apps are refused.
func TestRunNoApps(t *testing.T) {
	e := newPodEnv(t)
	uuidFile := filepath.Join(t.TempDir(), "uuid")
	r := mustSucceed(t, e.run(t, "--net=none", "--no-apps", "--uuid-file-save", uuidFile))
	uuid := strings.TrimSpace(r.Stdout)
	b, err := os.ReadFile(uuidFile)
	if err != nil || strings.TrimSpace(string(b)) != uuid || uuid == "" {
		t.Fatalf("printed UUID %q, saved %q (%v)", uuid, b, err)
	}
	t.Cleanup(func() { karman(t, e.dir, "stop", "--force", uuid) })
	pi := e.waitState(t, uuid, "started", func(pi stage0.PodInfo) bool { return !pi.Started.IsZero() })
	if pi.State != stage0.Running || len(pi.Apps) != 0 {
		t.Fatalf("empty pod: state %s, %d apps", pi.State, len(pi.Apps))
	}
	mustSucceed(t, karman(t, e.dir, "stop", uuid))
	pi = e.waitState(t, uuid, "exited", func(pi stage0.PodInfo) bool { return pi.State == stage0.Exited })
	if pi.ExitCode == nil || *pi.ExitCode != 0 {
		t.Errorf("an empty pod stopped: exit code %v, want 0", pi.ExitCode)
	}

	assertOneLine254(t, e.run(t, "--net=none", "--no-apps", e.image), "--no-apps", "images were given")
	assertOneLine254(t, e.run(t, "--net=none"), "no image given", "--no-apps")
}

// TestRunKeepAlive: with --keep-alive the pod outlives its only app,
// which is recorded as exited, until it is stopped; without it the same
// pod ends with its app.
func TestRunKeepAlive(t *testing.T) {
	e := newPodEnv(t)
	r := mustSucceed(t, e.run(t, "--net=none", "--keep-alive", "--detach", e.image, "--exec", "/bin/sh", "--", "-c", "exit 3"))
	uuid := strings.TrimSpace(r.Stdout)
	t.Cleanup(func() { karman(t, e.dir, "stop", "--force", uuid) })
	pi := e.waitState(t, uuid, "app exited", func(pi stage0.PodInfo) bool {
		return len(pi.Apps) == 1 && pi.Apps[0].ExitCode != nil
	})
	if pi.State != stage0.Running || *pi.Apps[0].ExitCode != 3 {
		t.Fatalf("kept-alive pod after its app exited 3: state %s, app exit %d", pi.State, *pi.Apps[0].ExitCode)
	}
	mustSucceed(t, karman(t, e.dir, "stop", uuid))
	pi = e.waitState(t, uuid, "exited", func(pi stage0.PodInfo) bool { return pi.State == stage0.Exited })
	if pi.ExitCode == nil || *pi.ExitCode != 3 {
		t.Errorf("kept-alive pod stopped: exit code %v, want its app's 3", pi.ExitCode)
	}
	// The default is unchanged: the pod ends with its last app.
	if r := e.run(t, "--net=none", e.image, "--exec", "/bin/sh", "--", "-c", "exit 4"); r.Code != 4 {
		t.Errorf("run without --keep-alive: exit %d, want 4\n%s", r.Code, r)
	}
}
