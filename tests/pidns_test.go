package tests

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/tests/testenv"
)

// procList is a busybox shell loop printing "PID CMDLINE" for every
// process in the /proc it sees.
const procList = `for p in /proc/[0-9]*; do echo "${p#/proc/} $(tr '\0' ' ' < $p/cmdline)"; done`

// procLines runs procList in app through enter and returns its lines by
// PID.
func (e *podEnv) procLines(t *testing.T, uuid, app string) map[string]string {
	t.Helper()
	r := mustSucceed(t, karman(t, e.dir, "enter", "--app", app, uuid, "/bin/sh", "-c", procList))
	out := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		pid, cmd, _ := strings.Cut(l, " ")
		out[pid] = cmd
	}
	return out
}

// TestAppPIDNamespace: an app started with --pid=app is PID 1 of a PID
// namespace of its own and sees only its own processes in a /proc of that
// namespace, masked like every app's, while an app of the pod's PID
// namespace sees them all; the apps still share network, IPC and UTS;
// enter --app joins the app's namespace; app stop delivers SIGTERM to a
// PID 1 that traps it, and SIGKILL to one that does not, with their exit
// codes; the app starts again in a new namespace; `run --pid=app` gives
// its app's exit code; gc leaves nothing.
//
// It runs on the host's default cgroup hierarchy and, where there is one
// beside it, on cgroup2 (where the app is forked with clone3 into its
// cgroup).
func TestAppPIDNamespace(t *testing.T) {
	testenv.RequireRoot(t, "pods need namespaces, mounts and cgroups")
	t.Run("default", func(t *testing.T) { testAppPIDNamespace(t, nil) })
	var st syscall.Statfs_t
	if syscall.Statfs("/sys/fs/cgroup", &st) != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		if syscall.Statfs("/sys/fs/cgroup/unified", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			t.Run("unified", func(t *testing.T) { testAppPIDNamespace(t, []string{"--cgroup-hierarchy=unified"}) })
		}
	}
}

func testAppPIDNamespace(t *testing.T, hier []string) {
	e := newGCEnv(t)
	uuid := strings.TrimSpace(mustSucceed(t, e.run(t, append(hier, "--net=none", "--no-apps")...)).Stdout)
	e.leaks.Track(uuid)
	e.uuids = append(e.uuids, uuid)
	t.Cleanup(func() {
		karman(t, e.dir, "stop", "--force", uuid)
		karman(t, e.dir, "status", "--wait=30s", uuid)
	})
	e.waitState(t, uuid, "started", func(pi stage0.PodInfo) bool { return !pi.Started.IsZero() })
	app := func(args ...string) {
		t.Helper()
		mustSucceed(t, karman(t, e.dir, append([]string{"app"}, args...)...))
	}
	app("add", uuid, e.image, "--name", "shared", "--exec", "/bin/sleep", "--", "1000")
	app("add", uuid, e.image, "--name", "own", "--pid=app", "--exec", "/bin/sh", "--", "-c",
		`echo "self=$$"; trap 'echo got-term; exit 7' TERM; while true; do sleep 0.1; done`)
	app("add", uuid, e.image, "--name", "deaf", "--pid", "app", "--exec", "/bin/sleep", "--", "1001")
	for _, a := range []string{"shared", "own", "deaf"} {
		app("start", uuid, "--app", a)
	}
	shared := e.waitApp(t, uuid, "shared", stage0.AppRunning)
	own := e.waitApp(t, uuid, "own", stage0.AppRunning)
	e.waitApp(t, uuid, "deaf", stage0.AppRunning)
	// Its first process is PID 1 of its namespace: the shell's $$.
	e.waitAppLog(t, uuid, "own", "self=1\n", 1)

	// The pid reported is the host's: that process is the app.
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", own.PID)); err != nil || !strings.Contains(string(b), "got-term") {
		t.Errorf("reported pid %d of own: cmdline %q (%v), want the app's", own.PID, b, err)
	}
	if hier != nil {
		// Forked straight into its own cgroup2 cgroup, with clone3.
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", own.PID))
		if !strings.Contains(string(b), "0::/") || !strings.Contains(string(b), uuid) {
			t.Errorf("own's cgroups on cgroup2:\n%s", b)
		}
	}
	sharedNS, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", shared.PID))
	for _, ns := range []string{"pid", "net", "ipc", "uts"} {
		a, aerr := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", shared.PID, ns))
		b, berr := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", own.PID, ns))
		if aerr != nil || berr != nil {
			t.Fatalf("%s namespaces: %v, %v", ns, aerr, berr)
		}
		if ns == "pid" && a == b {
			t.Errorf("own is in the pod's PID namespace %s", a)
		}
		if ns != "pid" && a != b {
			t.Errorf("%s namespace of shared %s, of own %s: want the pod's", ns, a, b)
		}
	}

	// In its own namespace: PID 1 is the app, and nothing of the pod's
	// other apps is in view; the enter session is in that namespace.
	ownView := e.procLines(t, uuid, "own")
	if !strings.Contains(ownView["1"], "got-term") {
		t.Errorf("PID 1 in own's /proc is %q, want the app\n%v", ownView["1"], ownView)
	}
	for pid, cmd := range ownView {
		if strings.Contains(cmd, "sleep 1000") || strings.Contains(cmd, "sleep 1001") {
			t.Errorf("own sees another app's process %s %q", pid, cmd)
		}
	}
	if len(ownView) > 4 { // the app, its sleep, the enter shell and tr
		t.Errorf("own sees %d processes, want only its own and the enter session's: %v", len(ownView), ownView)
	}
	pidNS, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", own.PID))
	r := mustSucceed(t, karman(t, e.dir, "enter", "--app", "own", uuid, "/bin/readlink", "/proc/self/ns/pid"))
	if got := strings.TrimSpace(r.Stdout); got != pidNS {
		t.Errorf("enter --app own is in PID namespace %s, the app in %s", got, pidNS)
	}
	// The masks and read-only paths of every app's /proc hold in its own:
	// /proc/timer_list is empty, and the /proc/sys mounted on the top
	// /proc (the app's, over the pod's) is read-only.
	r = mustSucceed(t, karman(t, e.dir, "enter", "--app", "own", uuid, "/bin/sh", "-c", `wc -c < /proc/timer_list`))
	if strings.TrimSpace(r.Stdout) != "0" {
		t.Errorf("own's /proc/timer_list is not masked: %s bytes", r.Stdout)
	}
	r = mustSucceed(t, karman(t, e.dir, "enter", "--app", "own", uuid, "/bin/cat", "/proc/self/mountinfo"))
	var mounts [][]string
	top, sysOpts := "", ""
	for _, l := range strings.Split(r.Stdout, "\n") {
		if f := strings.Fields(l); len(f) > 5 {
			mounts = append(mounts, f)
			if f[4] == "/proc" {
				top = f[0] // the last one is on top
			}
		}
	}
	for _, f := range mounts {
		if f[4] == "/proc/sys" && f[1] == top {
			sysOpts = f[5]
		}
	}
	if !strings.HasPrefix(sysOpts, "ro,") {
		t.Errorf("own's /proc/sys (on /proc mount %s) has options %q, want read-only\n%s", top, sysOpts, r.Stdout)
	}

	// The pod's namespace sees every app, its PID 1 the pod's init.
	sharedView := e.procLines(t, uuid, "shared")
	all := strings.Join(func() []string {
		var l []string
		for _, c := range sharedView {
			l = append(l, c)
		}
		return l
	}(), "\n")
	if !strings.Contains(all, "sleep 1000") || !strings.Contains(all, "got-term") || !strings.Contains(all, "sleep 1001") {
		t.Errorf("shared does not see every app:\n%s", all)
	}
	if strings.Contains(sharedView["1"], "got-term") || strings.Contains(sharedView["1"], "sleep") {
		t.Errorf("PID 1 of the pod's namespace is an app: %q", sharedView["1"])
	}

	// app stop: SIGTERM reaches a PID 1 that traps it; one that does not
	// (the kernel ignores it for a namespace's init) is killed.
	app("stop", uuid, "--app", "own", "--timeout", "20s")
	if a := e.appList(t, uuid)["own"]; a.ExitCode == nil || *a.ExitCode != 7 {
		t.Errorf("stopped own: %+v, want exit 7 from its trap", a)
	}
	app("stop", uuid, "--app", "deaf", "--timeout", "1s")
	if a := e.appList(t, uuid)["deaf"]; a.ExitCode == nil || *a.ExitCode != 137 {
		t.Errorf("stopped deaf: %+v, want 137 (SIGKILL)", a)
	}
	assertOneLine254(t, karman(t, e.dir, "enter", "--app", "own", uuid, "/bin/true"), "own", "not running")

	// Started again: a new namespace, the app its PID 1 again.
	app("start", uuid, "--app", "own")
	again := e.waitApp(t, uuid, "own", stage0.AppRunning)
	e.waitAppLog(t, uuid, "own", "self=1\n", 2)
	if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", again.PID)); ns == sharedNS || ns == "" {
		t.Errorf("restarted own in PID namespace %q, the pod's %q", ns, sharedNS)
	}
	if v := e.procLines(t, uuid, "own"); !strings.Contains(v["1"], "got-term") || len(v) > 4 {
		t.Errorf("restarted own's /proc: %v", v)
	}

	mustSucceed(t, karman(t, e.dir, "stop", uuid))
	karman(t, e.dir, "status", "--wait=30s", uuid)

	// karman run: the app's exit code, as PID 1 of its namespace.
	if r := e.run(t, append(hier, "--net=none", e.image, "--pid=app", "--exec", "/bin/sh", "--", "-c", `test $$ = 1 && exit 9`)...); r.Code != 9 {
		t.Errorf("run --pid=app: exit %d, want 9\n%s", r.Code, r)
	}
	if r := e.run(t, "--net=none", e.image, "--exec", "/bin/sh", "--", "-c", `test $$ = 1 || exit 9`); r.Code != 9 {
		t.Errorf("run with the pod's PID namespace: exit %d, want 9 (the app is not PID 1)\n%s", r.Code, r)
	}
	assertOneLine254(t, e.run(t, "--net=none", e.image, "--pid=host"), "--pid", "pod", "app")

	mustSucceed(t, karman(t, e.dir, "gc", "--all"))
	e.leaks.Check()
}
