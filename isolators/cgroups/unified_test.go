package cgroups

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/tests/testenv"
)

// unifiedMount is the cgroup2 hierarchy of this host: /sys/fs/cgroup on
// v2 hosts, /sys/fs/cgroup/unified on hybrid ones (which holds no
// resource controller there, but is a real cgroup2 hierarchy: membership,
// clone3 into a cgroup, eBPF device programs and cgroup.kill all work).
func unifiedMount(t *testing.T) string {
	t.Helper()
	for _, m := range []string{v2DefaultMount, "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(m, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return m
		}
	}
	testenv.SkipAllowed(t, testenv.CgroupLayout, "no cgroup2 hierarchy mounted")
	return ""
}

// TestV2OnUnifiedHierarchy runs the v2 code (Unified) on the host's real cgroup2
// hierarchy (on this hybrid machine the almost empty
// /sys/fs/cgroup/unified), in cgroups of its own under karman-test-<pid>-*:
// pod and app creation, the eBPF device allowlist, a process started
// inside its app with clone3 (CLONE_INTO_CGROUP), and Delete through
// cgroup.kill. Resource limits cannot be checked here: the controllers
// are bound to the v1 hierarchies.
func TestV2OnUnifiedHierarchy(t *testing.T) {
	needRoot(t)
	mount := unifiedMount(t)
	pod := newUnifiedPod(t, mount)
	t.Cleanup(func() {
		if err := pod.Delete(); err != nil {
			t.Errorf("cleanup Delete: %v", err)
		}
	})
	app, err := pod.AddApp("app", Resources{})
	if err != nil {
		t.Fatal(err)
	}

	// /dev/kmsg (c 1:11) opens outside the pod, as root, and not inside.
	probe := `exec 3</dev/null && echo null=ok; exec 4</dev/zero && echo zero=ok; (exec 5</dev/kmsg) 2>/dev/null && echo kmsg=open || echo kmsg=refused; cat /proc/self/cgroup; sleep 30`
	if out, err := exec.Command("/bin/sh", "-c", "(exec 5</dev/kmsg) && echo kmsg=open").CombinedOutput(); err != nil || !strings.Contains(string(out), "kmsg=open") {
		testenv.Missing(t, fmt.Sprintf("a host where root opens /dev/kmsg outside a cgroup (%v %s)", err, out), "run the tests on a VM or machine, not in a container that hides /dev/kmsg")
	}
	outFile := filepath.Join(t.TempDir(), "out")
	f, err := os.Create(outFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("/bin/sh", "-c", probe)
	cmd.Stdout, cmd.Stderr = f, f
	startInApp(t, app, cmd)
	var out string
	for range 200 { // up to 10s for the shell to get to sleep
		b, _ := os.ReadFile(outFile)
		if out = string(b); strings.Contains(out, "0::") {
			break
		}
		unix.Nanosleep(&unix.Timespec{Nsec: 50e6}, nil)
	}
	for _, want := range []string{"null=ok", "zero=ok", "kmsg=refused", "0::" + app.Path()} {
		if !strings.Contains(out, want) {
			t.Errorf("process in the app: %q lacks %q", out, want)
		}
	}
	procs := readTrim(t, filepath.Join(mount, app.Path(), "cgroup.procs"))
	if procs == "" {
		t.Fatalf("no process in %s", app.Path())
	}

	// Delete kills the process (cgroup.kill) and removes the cgroups.
	if err := pod.Delete(); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("process after Delete: %v", err)
	}
	if _, err := os.Stat(filepath.Join(mount, pod.Path)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pod still there after Delete: %v", err)
	}
}

// TestDeleteFindsUnifiedPods: on a hybrid host, Delete removes a pod made
// in the cgroup2 hierarchy (Unified) even when opened as a v1 pod, so a
// gc run under another --cgroup-hierarchy leaves nothing behind.
func TestDeleteFindsUnifiedPods(t *testing.T) {
	needRoot(t)
	if Mode() != "hybrid" {
		testenv.SkipAllowed(t, testenv.CgroupLayout, "needs a hybrid host, this one is "+Mode())
	}
	mount := unifiedMount(t)
	pod := newUnifiedPod(t, mount)
	if _, err := pod.AddApp("app", Resources{}); err != nil {
		t.Fatal(err)
	}
	if err := OpenPod(V1, pod.Path).Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mount, pod.Path)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unified pod after a v1 Delete: %v", err)
	}
}

// TestUnifiedRefusesMissingControllers: on a hybrid host the cgroup2
// hierarchy has no memory or pids controller; AddApp in it refuses those
// limits before making the app's cgroup, in one line naming the flags, the
// missing controllers and what to do.
func TestUnifiedRefusesMissingControllers(t *testing.T) {
	needRoot(t)
	if Mode() != "hybrid" {
		testenv.SkipAllowed(t, testenv.CgroupLayout, "needs a hybrid host, this one is "+Mode())
	}
	mount := unifiedMount(t)
	if b, _ := os.ReadFile(filepath.Join(mount, "cgroup.controllers")); strings.Contains(string(b), "memory") || strings.Contains(string(b), "pids") {
		testenv.SkipAllowed(t, testenv.CgroupLayout, "this hybrid host's cgroup2 hierarchy has controllers: "+string(b))
	}
	pod := newUnifiedPod(t, mount)
	t.Cleanup(func() {
		if err := pod.Delete(); err != nil {
			t.Errorf("cleanup Delete: %v", err)
		}
	})
	_, err := pod.AddApp("app", Resources{MemoryBytes: 64 << 20, PidsLimit: 100})
	if !errors.Is(err, ErrNoController) {
		t.Fatalf("AddApp with limits = %v, want ErrNoController", err)
	}
	for _, want := range []string{"--memory, --pids-limit refused", "(memory, pids)", mount, "--cgroup-hierarchy=auto"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("not one line: %q", err)
	}
	if _, serr := os.Stat(filepath.Join(mount, pod.Path, "app")); !errors.Is(serr, os.ErrNotExist) {
		t.Errorf("app cgroup made despite the refusal: %v", serr)
	}
}

// newUnifiedPod makes a pod's cgroup on the cgroup2 hierarchy mounted at
// mount, under a parent of its own that the test removes at its end.
func newUnifiedPod(t *testing.T, mount string) *Pod {
	t.Helper()
	parent := "/" + testPrefix + randHex(t)
	t.Cleanup(func() {
		if err := unix.Rmdir(filepath.Join(mount, parent)); err != nil && !errors.Is(err, unix.ENOENT) {
			t.Errorf("remove parent: %v", err)
		}
	})
	pod, err := NewPod(Unified, parent, "pod")
	if err != nil {
		t.Fatal(err)
	}
	return pod
}
