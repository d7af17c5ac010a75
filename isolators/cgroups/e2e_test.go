package cgroups

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/tests/testenv"
)

// End-to-end tests on the real kernel: they create cgroups under "/karman-test-<pid>-<rand>"
// (one parent per test binary run), start real processes in them and remove everything
// again. They need root and a mounted cgroup file system. TestMain fails the run if anything
// named karman-test-<pid>-* is left in any hierarchy.

func init() {
	// Keep the main goroutine on the main thread, so that the goroutines of startInApp, which
	// move their thread into an app cgroup and discard it, never run on the main thread.
	runtime.LockOSThread()
}

var testPrefix = fmt.Sprintf("karman-test-%d-", os.Getpid())

func TestMain(m *testing.M) {
	code := m.Run()
	if left := leftovers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "cgroups left behind: %v\n", left)
		code = 1
	}
	os.Exit(code)
}

// leftovers lists the cgroup directories of this run in every hierarchy (v1, and the v2 mount,
// which on hybrid hosts is /sys/fs/cgroup/unified).
func leftovers() []string {
	var out []string
	for _, pat := range []string{"/sys/fs/cgroup/" + testPrefix + "*", "/sys/fs/cgroup/*/" + testPrefix + "*"} {
		m, _ := filepath.Glob(pat)
		out = append(out, m...)
	}
	return out
}

func needRoot(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t, "creates cgroups and moves processes into them")
	if cgroups.Mode() == cgroups.Unavailable {
		testenv.Missing(t, "a cgroup file system mounted at /sys/fs/cgroup", "mount the cgroup v1 hierarchies or cgroup2 there, as an init system does")
	}
}

func randHex(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// testParent returns a fresh parent cgroup path and removes it (in every hierarchy) at the
// end of the test, after the pods' own cleanup.
func testParent(t *testing.T) string {
	parent := "/" + testPrefix + randHex(t)
	t.Cleanup(func() {
		for _, d := range hostDirs(t, parent) {
			if err := unix.Rmdir(d); err != nil && !errors.Is(err, unix.ENOENT) {
				t.Errorf("remove parent %s: %v", d, err)
			}
		}
	})
	return parent
}

// hostDirs is the directory of cgroup p in every hierarchy this package uses on this host.
func hostDirs(t *testing.T, p string) []string {
	t.Helper()
	if cgroups.Mode() == cgroups.Unified {
		return []string{filepath.Join(v2DefaultMount, p)}
	}
	subs, err := v1Hierarchy()
	if err != nil {
		t.Fatal(err)
	}
	return v1Dirs(subs, p)
}

func newTestPod(t *testing.T) *Pod {
	t.Helper()
	parent := testParent(t)
	pod, err := NewPod(Auto, parent, "pod-"+randHex(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pod.Delete(); err != nil {
			t.Errorf("cleanup Delete: %v", err)
		}
	})
	return pod
}

// startInApp starts cmd inside the app's cgroup: on v1 from a locked OS thread that joined
// the cgroup first (the thread is discarded afterwards: the goroutine returns still locked), on
// v2 with clone3 and the cgroup directory FD. The process is killed and reaped at cleanup if
// the test did not wait for it.
func startInApp(t *testing.T, app *App, cmd *exec.Cmd) {
	t.Helper()
	fd, err := app.FD()
	if err != nil {
		t.Fatal(err)
	}
	if fd >= 0 {
		defer unix.Close(fd)
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
		err = cmd.Start()
	} else {
		errc := make(chan error, 1)
		go func() {
			runtime.LockOSThread()
			// No UnlockOSThread: this thread now lives in the app's cgroup and must not run
			// other goroutines; the runtime ends it when this goroutine returns.
			if err := app.JoinThread(unix.Gettid()); err != nil {
				errc <- err
				return
			}
			errc <- cmd.Start()
		}()
		err = <-errc
	}
	if err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
}

func readTrim(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// ctrlDir is the directory of cgroup p in the v1 hierarchy of controller ctrl, or the v2 one.
func ctrlDir(ctrl, p string) string {
	if cgroups.Mode() == cgroups.Unified {
		return filepath.Join(v2DefaultMount, p)
	}
	return filepath.Join("/sys/fs/cgroup", ctrl, p)
}

func TestEndToEndPodApp(t *testing.T) {
	needRoot(t)
	t.Logf("cgroup mode %s", Mode())
	pod := newTestPod(t)

	// Creating an existing pod is fine.
	if _, err := NewPod(Auto, filepath.Dir(pod.Path), filepath.Base(pod.Path)); err != nil {
		t.Fatalf("NewPod again: %v", err)
	}
	for _, d := range hostDirs(t, pod.Path) {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("pod missing in a hierarchy: %v", err)
		}
	}

	res := Resources{MemoryBytes: 64 << 20, CPUMillis: 500, CPUShares: 512, PidsLimit: 64}
	app, err := pod.AddApp("app", res)
	if err != nil {
		t.Fatal(err)
	}
	if want := pod.Path + "/app"; app.Path() != want {
		t.Fatalf("app path %q, want %q", app.Path(), want)
	}

	// The limits are in the kernel's files.
	var want map[string]string
	if cgroups.Mode() == cgroups.Unified {
		want = map[string]string{
			"memory/memory.max": "67108864",
			"cpu/cpu.max":       "50000 100000",
			"cpu/cpu.weight":    "59",
			"pids/pids.max":     "64",
		}
	} else {
		want = map[string]string{
			"memory/memory.limit_in_bytes": "67108864",
			"cpu/cpu.cfs_quota_us":         "50000",
			"cpu/cpu.cfs_period_us":        "100000",
			"cpu/cpu.shares":               "512",
			"pids/pids.max":                "64",
		}
	}
	for k, v := range want {
		ctrl, file, _ := strings.Cut(k, "/")
		if got := readTrim(t, filepath.Join(ctrlDir(ctrl, app.Path()), file)); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}

	if cgroups.Mode() != cgroups.Unified {
		if err := app.JoinThread(os.Getpid()); !errors.Is(err, ErrMainThread) {
			t.Fatalf("JoinThread(main thread) = %v, want ErrMainThread", err)
		}
	}

	// A real process started inside the app's cgroup.
	cmd := exec.Command("sleep", "30")
	startInApp(t, app, cmd)
	pid := cmd.Process.Pid
	procCg := readTrim(t, "/proc/"+strconv.Itoa(pid)+"/cgroup")
	entries, err := parseProcCgroup(procCg)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, e := range entries {
		isSystemd := len(e.Controllers) == 1 && e.Controllers[0] == "name=systemd"
		isUnifiedOnHybrid := e.ID == "0" && cgroups.Mode() != cgroups.Unified
		if isSystemd || isUnifiedOnHybrid || !usesController(e.Controllers) {
			continue // not driven by this package on this host kind
		}
		if e.Path != app.Path() {
			t.Errorf("/proc/%d/cgroup: %s:%v:%s, want path %s", pid, e.ID, e.Controllers, e.Path, app.Path())
		}
		checked++
	}
	if checked == 0 {
		t.Fatalf("no controller entry in /proc/%d/cgroup:\n%s", pid, procCg)
	}

	st, err := app.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats: %+v", st)
	if st.Pids < 1 || st.MemoryCurrent == 0 || st.MemoryPeak < st.MemoryCurrent || st.CPUUsageNs == 0 {
		t.Errorf("implausible stats %+v", st)
	}

	// Another process (karman status) reopens it by pod path and name.
	again, err := OpenApp(Auto, pod.Path, "app")
	if err != nil {
		t.Fatal(err)
	}
	if st2, err := again.Stats(); err != nil || st2.Pids < 1 {
		t.Errorf("reopened stats %+v, %v", st2, err)
	}

	// Delete kills what is left and removes every directory, in every hierarchy.
	if err := pod.Delete(); err != nil {
		t.Fatal(err)
	}
	werr := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("sleep ended with %v, want SIGKILL", werr)
	}
	for _, d := range hostDirs(t, pod.Path) {
		if _, err := os.Lstat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left after Delete (%v)", d, err)
		}
	}
	if _, err := OpenApp(Auto, pod.Path, "app"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenApp after Delete = %v, want ErrNotExist", err)
	}
	// Idempotent.
	if err := pod.Delete(); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
}

func TestEndToEndCPUThrottling(t *testing.T) {
	needRoot(t)
	pod := newTestPod(t)
	app, err := pod.AddApp("burn", Resources{CPUMillis: 50})
	if err != nil {
		t.Fatal(err)
	}
	// A busy loop under 5% of a CPU; it gets throttled and Delete kills it.
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	startInApp(t, app, cmd)
	var st Stats
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if st, err = app.Stats(); err != nil {
			t.Fatal(err)
		}
		if st.ThrottledPeriods > 0 && st.ThrottledNs > 0 && st.CPUUsageNs > 0 {
			break
		}
	}
	t.Logf("stats: %+v", st)
	if st.ThrottledPeriods == 0 || st.ThrottledNs == 0 {
		t.Fatalf("busy loop under a 50m CPU limit never throttled: %+v", st)
	}
	if err := pod.Delete(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("busy loop exited normally")
	}
}

func TestEndToEndOOMKill(t *testing.T) {
	needRoot(t)
	pod := newTestPod(t)
	const limit = 32 << 20
	app, err := pod.AddApp("hog", Resources{MemoryBytes: limit})
	if err != nil {
		t.Fatal(err)
	}
	// The shell keeps ~200 MB of output of the command substitution in memory.
	cmd := exec.Command("sh", "-c", `x=$(head -c 200000000 /dev/zero | tr "\0" a); echo survived`)
	startInApp(t, app, cmd)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Logf("hog ended: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("memory hog still running after 2 minutes")
	}
	st, err := app.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats: %+v", st)
	if st.OOMKills < 1 {
		t.Errorf("OOMKills = %d, want >= 1", st.OOMKills)
	}
	if st.MemoryPeak == 0 || st.MemoryPeak > limit {
		t.Errorf("MemoryPeak = %d, want in (0, %d]", st.MemoryPeak, limit)
	}
}

func TestEndToEndSeveralApps(t *testing.T) {
	needRoot(t)
	pod := newTestPod(t)
	var cmds []*exec.Cmd
	for _, name := range []string{"a", "b", "c"} {
		app, err := pod.AddApp(name, Resources{PidsLimit: 10})
		if err != nil {
			t.Fatal(err)
		}
		// A process tree: sh with a sleeping child, both must be killed by Delete.
		cmd := exec.Command("sh", "-c", "sleep 30 & wait")
		startInApp(t, app, cmd)
		cmds = append(cmds, cmd)
	}
	// Wait until every shell has its child.
	for _, name := range []string{"a", "b", "c"} {
		app, err := OpenApp(Auto, pod.Path, name)
		if err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			st, err := app.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.Pids >= 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("app %s: pids %d, want 2", name, st.Pids)
			}
		}
	}
	if err := pod.Delete(); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err == nil {
			t.Errorf("%v exited normally", cmd.Args)
		}
	}
	for _, d := range hostDirs(t, pod.Path) {
		if _, err := os.Lstat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left after Delete", d)
		}
	}
}

func TestEndToEndDeleteMissing(t *testing.T) {
	needRoot(t)
	parent := testParent(t)
	if err := OpenPod(Auto, parent+"/never-created").Delete(); err != nil {
		t.Fatalf("Delete of a missing pod: %v", err)
	}
	if _, err := OpenApp(Auto, parent+"/never-created", "app"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("OpenApp of a missing app = %v", err)
	}
}

func TestEndToEndAddAppCreatesMissingPod(t *testing.T) {
	needRoot(t)
	parent := testParent(t)
	pod := OpenPod(Auto, parent+"/pod-"+randHex(t))
	t.Cleanup(func() {
		if err := pod.Delete(); err != nil {
			t.Error(err)
		}
	})
	if _, err := pod.AddApp("app", Resources{MemoryBytes: 16 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ctrlDir("memory", pod.Path+"/app")); err != nil {
		t.Fatal(err)
	}
}

func TestParentOnThisHost(t *testing.T) {
	p, err := Parent()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p, "/") || !(p == DefaultParent || strings.HasSuffix(p, "/"+systemdPodsDir)) {
		t.Fatalf("Parent() = %q", p)
	}
	if _, err := os.Stat("/run/systemd/system"); err != nil && p != DefaultParent {
		t.Fatalf("no systemd, Parent() = %q, want %q", p, DefaultParent)
	}
	t.Logf("Parent() = %q", p)
}

// usesController reports whether a v1 hierarchy holds a controller pods
// get cgroups in (podControllers).
func usesController(ctrls []string) bool {
	for _, c := range ctrls {
		if podControllers[cgroup1.Name(c)] {
			return true
		}
	}
	return false
}
