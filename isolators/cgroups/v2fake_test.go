package cgroups

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The v2 code paths run here against a fake cgroup2 tree of plain files in a temporary
// directory (this machine is hybrid: its cgroup2 mount holds only hugetlb). The fake stands in
// for the kernel: it pre-creates cgroup.controllers/cgroup.subtree_control of each level and
// the counters the kernel would fill; the code under test and containerd's cgroup2 read and
// write them as they would on a v2 host.

func fakeV2(t *testing.T, levels ...string) string {
	t.Helper()
	mount := t.TempDir()
	for i, lvl := range levels {
		d := filepath.Join(mount, lvl)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		ctrl := "cpuset cpu io memory hugetlb pids rdma misc\n"
		if i > 0 {
			ctrl = "cpu memory pids\n" // what the parent enabled
		}
		writeFile(t, filepath.Join(d, "cgroup.controllers"), ctrl)
		writeFile(t, filepath.Join(d, "cgroup.subtree_control"), "")
	}
	hostOverride = &host{v2: true, v2Mount: mount}
	t.Cleanup(func() { hostOverride = nil })
	return mount
}

func writeFile(t *testing.T, name, data string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	// containerd creates missing files with mode 0 (on cgroupfs they always exist); make the
	// fake's files readable for a non-root run.
	_ = os.Chmod(name, 0o644)
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestV2FakeTree(t *testing.T) {
	mount := fakeV2(t, "/", "/karman", "/karman/pod1")

	pod, err := NewPod("/karman", "pod1")
	if err != nil {
		t.Fatal(err)
	}
	if pod.Path != "/karman/pod1" {
		t.Fatalf("pod path %q", pod.Path)
	}
	// Controllers enabled at every level down to the pod itself (so its apps get them).
	for _, lvl := range []string{"/", "/karman", "/karman/pod1"} {
		if got := readFile(t, filepath.Join(mount, lvl, "cgroup.subtree_control")); got != "+cpu +memory +pids" {
			t.Errorf("%s subtree_control = %q", lvl, got)
		}
	}

	app, err := pod.AddApp("web", Resources{MemoryBytes: 32 << 20, CPUMillis: 250, CPUShares: 2048, PidsLimit: 50})
	if err != nil {
		t.Fatal(err)
	}
	if app.Path() != "/karman/pod1/web" {
		t.Fatalf("app path %q", app.Path())
	}
	dir := filepath.Join(mount, "karman/pod1/web")
	for file, want := range map[string]string{
		"memory.max": "33554432",
		"cpu.max":    "25000 100000",
		"cpu.weight": "174",
		"pids.max":   "50",
	} {
		if got := readFile(t, filepath.Join(dir, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "memory.swap.max")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("memory.swap.max must not be written: %v", err)
	}

	// A thread cannot join a v2 cgroup; the lead uses the directory FD with clone3.
	if err := app.JoinThread(unix.Gettid()); !errors.Is(err, ErrThreadJoin) {
		t.Fatalf("JoinThread on v2 = %v", err)
	}
	fd, err := app.FD()
	if err != nil || fd < 0 {
		t.Fatalf("FD = %d, %v", fd, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Fatalf("FD is not a directory: %v", err)
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_PATH != 0 || fl&unix.O_ACCMODE != unix.O_RDONLY {
		t.Fatalf("FD flags %#x (must be O_RDONLY, not O_PATH): %v", fl, err)
	}
	unix.Close(fd)

	// Counters as the kernel writes them.
	writeFile(t, filepath.Join(dir, "memory.current"), "1048576\n")
	writeFile(t, filepath.Join(dir, "memory.peak"), "33554432\n")
	writeFile(t, filepath.Join(dir, "memory.events"), "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n")
	writeFile(t, filepath.Join(dir, "memory.stat"), "anon 1048576\nfile 0\n")
	writeFile(t, filepath.Join(dir, "cpu.stat"), "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 20\nnr_throttled 5\nthrottled_usec 750\nnr_bursts 0\nburst_usec 0\n")
	writeFile(t, filepath.Join(dir, "pids.current"), "3\n")

	reopened, err := OpenApp("/karman/pod1", "web")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []*App{app, reopened} {
		s, err := a.Stats()
		if err != nil {
			t.Fatal(err)
		}
		want := Stats{MemoryCurrent: 1 << 20, MemoryPeak: 32 << 20, CPUUsageNs: 1500000, ThrottledPeriods: 5, ThrottledNs: 750000, Pids: 3, OOMKills: 2}
		if s != want {
			t.Fatalf("Stats = %+v, want %+v", s, want)
		}
	}
	if _, err := OpenApp("/karman/pod1", "nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("OpenApp of a missing app = %v", err)
	}

	// Adding an app without limits writes no limit file.
	if _, err := pod.AddApp("plain", Resources{}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(mount, "karman/pod1/plain")); len(ents) != 0 {
		t.Fatalf("files written for an app without limits: %v", ents)
	}

	// Delete removes the pod with its apps and keeps the parent; deleting again is fine.
	if err := OpenPod("/karman/pod1").Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mount, "karman/pod1")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("pod still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(mount, "karman")); err != nil {
		t.Fatalf("parent removed: %v", err)
	}
	if err := pod.Delete(); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
}

func TestV2FakeMemoryEventsMissing(t *testing.T) {
	// Without memory.events (memory controller not enabled) Stats still works, OOMKills = 0.
	mount := fakeV2(t, "/", "/k", "/k/p")
	pod, err := NewPod("/k", "p")
	if err != nil {
		t.Fatal(err)
	}
	app, err := pod.AddApp("a", Resources{})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(mount, "k/p/a/pids.current"), "1\n")
	s, err := app.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s != (Stats{Pids: 1}) {
		t.Fatalf("Stats = %+v", s)
	}
}

func TestV2FakeControllerMissing(t *testing.T) {
	// A host whose root lacks "pids": only cpu and memory are enabled, no error.
	mount := fakeV2(t, "/", "/k", "/k/p")
	writeFile(t, filepath.Join(mount, "cgroup.controllers"), "cpu memory\n")
	if _, err := NewPod("/k", "p"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(mount, "cgroup.subtree_control")); got != "+cpu +memory" {
		t.Fatalf("root subtree_control = %q", got)
	}
}

func TestNewPodRejectsBadNames(t *testing.T) {
	fakeV2(t, "/")
	for _, bad := range []string{"", "..", "a/b"} {
		if _, err := NewPod("/karman", bad); err == nil {
			t.Errorf("NewPod(%q) accepted", bad)
		}
	}
	if _, err := OpenPod("/karman/x").AddApp("../y", Resources{}); err == nil {
		t.Error("AddApp(../y) accepted")
	}
	if err := OpenPod("/").Delete(); err == nil {
		t.Error("Delete of / accepted")
	}
}
