package cgroups

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
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
	hostOverride = &host{v2: true, v2Mount: mount, devices: func(dir string, _ []specs.LinuxDeviceCgroup) error {
		// What attachDeviceFilter would attach (it needs a real cgroup:
		// TestV2OnUnifiedHierarchy), recorded where the fake can see it.
		return os.WriteFile(filepath.Join(dir, fakeDeviceFilter), nil, 0o644)
	}}
	t.Cleanup(func() { hostOverride = nil })
	return mount
}

// fakeDeviceFilter marks a fake app cgroup that got the device allowlist.
const fakeDeviceFilter = "fake.device-filter"

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

	pod, err := NewPod(Auto, "/karman", "pod1")
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
	if _, err := os.Stat(filepath.Join(dir, fakeDeviceFilter)); err != nil {
		t.Errorf("no device allowlist attached to the app: %v", err)
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

	reopened, err := OpenApp(Auto, "/karman/pod1", "web")
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
	if _, err := OpenApp(Auto, "/karman/pod1", "nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("OpenApp of a missing app = %v", err)
	}

	// Adding an app without limits writes no limit file, and still gets
	// the device allowlist.
	if _, err := pod.AddApp("plain", Resources{}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(mount, "karman/pod1/plain")); len(ents) != 1 || ents[0].Name() != fakeDeviceFilter {
		t.Fatalf("files of an app without limits: %v", ents)
	}

	// Delete removes the pod with its apps and keeps the parent; deleting again is fine.
	if err := OpenPod(Auto, "/karman/pod1").Delete(); err != nil {
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
	pod, err := NewPod(Auto, "/k", "p")
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
	if _, err := NewPod(Auto, "/k", "p"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(mount, "cgroup.subtree_control")); got != "+cpu +memory" {
		t.Fatalf("root subtree_control = %q", got)
	}
}

func TestNewPodRejectsBadNames(t *testing.T) {
	fakeV2(t, "/")
	for _, bad := range []string{"", "..", "a/b"} {
		if _, err := NewPod(Auto, "/karman", bad); err == nil {
			t.Errorf("NewPod(Auto, %q) accepted", bad)
		}
	}
	if _, err := OpenPod(Auto, "/karman/x").AddApp("../y", Resources{}); err == nil {
		t.Error("AddApp(../y) accepted")
	}
	if err := OpenPod(Auto, "/").Delete(); err == nil {
		t.Error("Delete of / accepted")
	}
}

// TestSystemdDelegatedPlacement: under systemd (its runtime directory
// exists) a caller inside a unit gets its pods in the unit's own cgroup,
// "<unit>/karman-pods/<uuid>", with the controllers handed down through
// the unit; elsewhere, or outside a unit, under /karman. Detection reads a
// fake /proc/self/cgroup and a fake /run/systemd/system.
func TestSystemdDelegatedPlacement(t *testing.T) {
	dir := t.TempDir()
	systemd := filepath.Join(dir, "run-systemd-system")
	if err := os.Mkdir(systemd, 0o755); err != nil {
		t.Fatal(err)
	}
	notADir := filepath.Join(dir, "plain-file")
	writeFile(t, notADir, "")
	for _, tc := range []struct {
		name, proc, systemdDir, want string
	}{
		{"v2 unit", procV2Systemd, systemd, "/system.slice/karman.service/karman-pods"},
		{"hybrid unit", procHybridSystemd, systemd, "/system.slice/karman.service/karman-pods"},
		{"v1 unit", procV1Systemd, systemd, "/system.slice/karman.service/karman-pods"},
		{"v2 unit, caller in its leaf", procV2SystemdSelf, systemd, "/system.slice/karman.service/karman-pods"},
		{"user session scope", procV2Session, systemd, "/user.slice/user-1000.slice/session-2.scope/karman-pods"},
		{"systemd, caller in the root", procV2Root, systemd, "/karman"},
		{"no systemd", procV2Systemd, filepath.Join(dir, "missing"), "/karman"},
		{"no systemd, a file in its place", procV2Systemd, notADir, "/karman"},
		{"this machine", procHybridNoSystemd, filepath.Join(dir, "missing"), "/karman"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proc := filepath.Join(t.TempDir(), "cgroup")
			writeFile(t, proc, tc.proc)
			got, err := parentFromFiles(proc, tc.systemdDir)
			if err != nil || got != tc.want {
				t.Fatalf("parent = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := parentFromFiles(filepath.Join(dir, "missing"), systemd); err == nil {
		t.Error("no error for a missing /proc/self/cgroup")
	}
	bad := filepath.Join(dir, "bad")
	writeFile(t, bad, "garbage\n")
	if _, err := parentFromFiles(bad, systemd); err == nil {
		t.Error("no error for a malformed /proc/self/cgroup")
	}

	// The pod lands in the unit's cgroup, with cpu, memory and pids
	// enabled from the root through the unit and karman-pods to the pod.
	unit := "/system.slice/karman.service"
	// (The fake's levels stand for the directories the kernel fills.)
	mount := fakeV2(t, "/", "/system.slice", unit, unit+"/karman-pods", unit+"/karman-pods/uuid1")
	proc := filepath.Join(dir, "proc-self-cgroup")
	writeFile(t, proc, procV2Systemd)
	parent, err := parentFromFiles(proc, systemd)
	if err != nil {
		t.Fatal(err)
	}
	// PrepareParent (before the supervisor starts the init) already hands
	// the controllers down to karman-pods.
	if err := PrepareParent(Auto, parent); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(mount, parent, "cgroup.subtree_control")); got != "+cpu +memory +pids" {
		t.Errorf("%s subtree_control after PrepareParent = %q", parent, got)
	}
	pod, err := NewPod(Auto, parent, "uuid1")
	if err != nil {
		t.Fatal(err)
	}
	if pod.Path != unit+"/karman-pods/uuid1" {
		t.Fatalf("pod at %s", pod.Path)
	}
	for _, lvl := range []string{"/", "/system.slice", unit, unit + "/karman-pods", pod.Path} {
		if got := readFile(t, filepath.Join(mount, lvl, "cgroup.subtree_control")); got != "+cpu +memory +pids" {
			t.Errorf("%s subtree_control = %q", lvl, got)
		}
	}

	// A unit's cgroup that holds processes cannot hand controllers down
	// (the kernel says EBUSY): when the caller is alone there it moves
	// itself into <unit>/karman-self; with other processes it does not.
	unitDir := filepath.Join(mount, unit)
	self := strconv.Itoa(os.Getpid())
	writeFile(t, filepath.Join(unitDir, "cgroup.procs"), self+"\n")
	if err := os.Mkdir(filepath.Join(unitDir, "karman-self"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(unitDir, "karman-self", "cgroup.procs"), "") // the kernel's file
	moved, err := moveSelfOut(unitDir, unit, proc)
	if err != nil || !moved {
		t.Fatalf("moveSelfOut alone in the unit = %v, %v", moved, err)
	}
	if got := readFile(t, filepath.Join(unitDir, "karman-self", "cgroup.procs")); got != self {
		t.Errorf("karman-self/cgroup.procs = %q, want %s", got, self)
	}
	writeFile(t, filepath.Join(unitDir, "cgroup.procs"), self+"\n1\n")
	if moved, err := moveSelfOut(unitDir, unit, proc); err != nil || moved {
		t.Errorf("moveSelfOut with another process in the unit = %v, %v", moved, err)
	}
	// Not the caller's own cgroup: never moved.
	if moved, err := moveSelfOut(filepath.Join(mount, "system.slice"), "/system.slice", proc); err != nil || moved {
		t.Errorf("moveSelfOut of another cgroup = %v, %v", moved, err)
	}
}

// TestV2FakeLimitWithoutController: a limit whose controller the hierarchy
// lacks is refused, naming the flag and the controller, before the app's
// cgroup is made; a limit whose controller is there is applied.
func TestV2FakeLimitWithoutController(t *testing.T) {
	mount := fakeV2(t, "/", "/k", "/k/p")
	writeFile(t, filepath.Join(mount, "cgroup.controllers"), "cpu\n")
	pod, err := NewPod(Unified, "/k", "p")
	if err != nil {
		t.Fatal(err)
	}
	_, err = pod.AddApp("a", Resources{CPUMillis: 500, PidsLimit: 10})
	if !errors.Is(err, ErrNoController) || !strings.Contains(err.Error(), "--pids-limit refused") || strings.Contains(err.Error(), "--cpu") || !strings.Contains(err.Error(), "(pids)") {
		t.Fatalf("AddApp = %v", err)
	}
	if _, err := os.Stat(filepath.Join(mount, "k/p/a")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("app made despite the refusal: %v", err)
	}
	if _, err := pod.AddApp("a", Resources{CPUMillis: 500}); err != nil {
		t.Fatal(err)
	}
}
