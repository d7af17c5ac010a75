package tests

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/stage1/poddir"
	"github.com/karman-project/karman/tests/testenv"
	"github.com/karman-project/karman/tests/testimage"
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
	t.Cleanup(func() {
		karman(t, e.dir, "stop", "--force", uuid)
		karman(t, e.dir, "status", "--wait=30s", uuid)
	})
	// run --no-apps returns once the pod is up: the next command finds it.
	if _, err := os.Stat(filepath.Join(e.dir, "pods", "run", uuid, poddir.Started)); err != nil {
		t.Errorf("run --no-apps returned before the pod had started: %v", err)
	}
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
	t.Cleanup(func() {
		karman(t, e.dir, "stop", "--force", uuid)
		karman(t, e.dir, "status", "--wait=30s", uuid)
	})
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

// appList is `app list --format json`.
func (e *podEnv) appList(t *testing.T, uuid string) map[string]stage0.AppInfo {
	t.Helper()
	r := mustSucceed(t, karman(t, e.dir, "app", "list", "--format", "json", uuid))
	var apps []stage0.AppInfo
	if err := json.Unmarshal([]byte(r.Stdout), &apps); err != nil {
		t.Fatalf("app list json: %v\n%s", err, r.Stdout)
	}
	out := map[string]stage0.AppInfo{}
	for _, a := range apps {
		out[a.Name] = a
	}
	return out
}

// waitApp polls app list until app is in state.
func (e *podEnv) waitApp(t *testing.T, uuid, app, state string) stage0.AppInfo {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		a, ok := e.appList(t, uuid)[app]
		if ok && a.State == state {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("app %s of pod %s never %s: %+v", app, uuid, state, a)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serving checks that addr answers with want (the web app's greeting),
// retrying while the server starts or re-listens.
func serving(t *testing.T, addr, want string) {
	t.Helper()
	var last string
	for range 200 {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			b, _ := io.ReadAll(c)
			c.Close()
			if strings.Contains(string(b), want) {
				return
			}
			last = fmt.Sprintf("read %q", b)
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s does not serve %q: %s", addr, want, last)
}

// waitAppLog waits until app's log holds s n times.
func (e *podEnv) waitAppLog(t *testing.T, uuid, app, s string, n int) {
	t.Helper()
	var logs string
	for range 600 {
		logs = karman(t, e.dir, "logs", "--app", app, uuid).Stdout
		if strings.Count(logs, s) >= n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("app %s of pod %s never logged %q %d times:\n%s", app, uuid, s, n, logs)
}

// checkAppLog checks an app's log file: one CRI record per line (time,
// stream, F, text), times in order within a stream, the records want
// (stream and text) among them in this order, and other n times (the two
// streams are two pipes: their records interleave as they were read).
func checkAppLog(t *testing.T, file string, want []string, other string, n int) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]time.Time{}
	var got []string
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		f := strings.SplitN(line, " ", 4)
		if len(f) != 4 || (f[1] != "stdout" && f[1] != "stderr") || f[2] != "F" {
			t.Fatalf("log line %q is not a CRI record (TIME STREAM F TEXT)", line)
		}
		at, err := time.Parse("2006-01-02T15:04:05.999999999Z07:00", f[0])
		if err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if at.Before(last[f[1]]) {
			t.Errorf("log line %q is older than the one before on its stream", line)
		}
		last[f[1]] = at
		got = append(got, f[1]+" "+f[3])
	}
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	if i != len(want) {
		t.Errorf("log %s: records %q do not hold %q in order", file, got, want)
	}
	if c := strings.Count(strings.Join(got, "\n")+"\n", other+"\n"); c != n {
		t.Errorf("log %s: %d records %q, want %d: %q", file, c, other, n, got)
	}
}

// appCgroups lists the app's cgroup directories in every hierarchy.
func appCgroups(uuid, app string) []string {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/karman/" + uuid + "/" + app)
	more, _ := filepath.Glob("/sys/fs/cgroup/karman/" + uuid + "/" + app)
	return append(dirs, more...)
}

// TestAppsMutablePod: a pod started with --no-apps on the default
// network gets an app that serves on the pod's address; a second app is
// added, started, stopped, started again (restart count 1) and removed
// while the first keeps serving, checked after each step; its log keeps
// both runs in order; what is refused says so in one line; and once the
// pod is stopped gc leaves nothing (the podEnv leak check).
func TestAppsMutablePod(t *testing.T) {
	ne := newNetEnv(t, 24)
	uuid := strings.TrimSpace(mustSucceed(t, ne.run(t, "--net=default", "--no-apps")).Stdout)
	t.Cleanup(func() {
		karman(t, ne.dir, "stop", "--force", uuid)
		karman(t, ne.dir, "status", "--wait=30s", uuid)
	})
	ne.waitState(t, uuid, "started", func(pi stage0.PodInfo) bool { return !pi.Started.IsZero() })
	addr := ne.podIP(t, uuid, "default") + ":5000"
	app := func(args ...string) testenv.Result {
		t.Helper()
		return karman(t, ne.dir, append([]string{"app"}, args...)...)
	}

	r := mustSucceed(t, app("add", uuid, ne.image, "--name", "web", "--exec", "/bin/sh", "--", "-c",
		"while true; do echo hello-from-web | nc -l -p 5000; done"))
	if strings.TrimSpace(r.Stdout) != "web" {
		t.Errorf("app add printed %q, want the app's name", r.Stdout)
	}
	if a := ne.appList(t, uuid)["web"]; a.State != stage0.AppCreated || a.PID != 0 {
		t.Errorf("added app: %+v, want created", a)
	}
	mustSucceed(t, app("start", uuid, "--app", "web"))
	serving(t, addr, "hello-from-web")

	// A second app: added, started, stopped, started again, removed.
	mustSucceed(t, app("add", uuid, ne.image, "--name", "worker", "--exec", "/bin/sh", "--", "-c",
		`echo run-start; echo to-stderr >&2; trap 'echo got-term; exit 5' TERM; while true; do sleep 0.1; done`))
	serving(t, addr, "hello-from-web")
	mustSucceed(t, app("start", uuid, "--app", "worker"))
	w := ne.waitApp(t, uuid, "worker", stage0.AppRunning)
	if w.PID == 0 || w.Restarts != 0 || w.Started.IsZero() {
		t.Errorf("started worker: %+v", w)
	}
	ne.waitAppLog(t, uuid, "worker", "run-start", 1)
	// The two apps share the pod's network, IPC and UTS namespaces.
	web := ne.appList(t, uuid)["web"]
	for _, ns := range []string{"net", "ipc", "uts"} {
		a, aerr := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", web.PID, ns))
		b, berr := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", w.PID, ns))
		if aerr != nil || berr != nil || a != b {
			t.Errorf("%s namespace of web %q (%v), of worker %q (%v): want one", ns, a, aerr, b, berr)
		}
		host, _ := os.Readlink("/proc/self/ns/" + ns)
		if a == host {
			t.Errorf("the apps are in the host's %s namespace", ns)
		}
	}
	serving(t, addr, "hello-from-web")
	assertOneLine254(t, app("start", uuid, "--app", "worker"), "worker", "is running", "app stop")

	mustSucceed(t, app("stop", uuid, "--app", "worker", "--timeout", "10s"))
	w = ne.appList(t, uuid)["worker"]
	if w.State != stage0.AppExited || w.ExitCode == nil || *w.ExitCode != 5 || w.Finished.IsZero() {
		t.Errorf("stopped worker: %+v, want exited 5", w)
	}
	serving(t, addr, "hello-from-web")
	assertOneLine254(t, app("stop", uuid, "--app", "worker"), "worker", "not running")

	mustSucceed(t, app("start", uuid, "--app", "worker"))
	w = ne.waitApp(t, uuid, "worker", stage0.AppRunning)
	if w.Restarts != 1 || w.ExitCode != nil {
		t.Errorf("restarted worker: %+v, want restart count 1 and no exit code", w)
	}
	serving(t, addr, "hello-from-web")
	ne.waitAppLog(t, uuid, "worker", "run-start", 2)
	mustSucceed(t, app("stop", uuid, "--app", "worker", "--timeout", "10s"))
	logs := mustSucceed(t, karman(t, ne.dir, "logs", "--app", "worker", uuid)).Stdout
	if i, j, k := strings.Index(logs, "run-start\n"), strings.Index(logs, "got-term\n"), strings.LastIndex(logs, "run-start\n"); i < 0 || j < i || k < j {
		t.Errorf("worker's log does not keep both runs in order:\n%s", logs)
	}
	checkAppLog(t, filepath.Join(ne.dir, "pods", "run", uuid, "logs", "worker.log"),
		[]string{"stdout run-start", "stdout got-term", "stdout run-start", "stdout got-term"}, "stderr to-stderr", 2)

	assertOneLine254(t, app("rm", uuid, "--app", "web"), "web", "is running", "--force")
	mustSucceed(t, app("rm", uuid, "--app", "worker"))
	if apps := ne.appList(t, uuid); len(apps) != 1 || apps["web"].State != stage0.AppRunning {
		t.Errorf("after app rm worker: %+v", apps)
	}
	if dirs := appCgroups(uuid, "worker"); len(dirs) != 0 {
		t.Errorf("removed app's cgroups left: %v", dirs)
	}
	podDir := filepath.Join(ne.dir, "pods", "run", uuid)
	for _, p := range []string{"apps/worker", "logs/worker.log", "state/apps/worker.json"} {
		if _, err := os.Lstat(filepath.Join(podDir, p)); err == nil {
			t.Errorf("removed app's %s left", p)
		}
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), "/worker/") {
		t.Errorf("removed app's mounts left in the host")
	}
	serving(t, addr, "hello-from-web")

	// An added app gets its volumes, read-only when asked.
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "f"), []byte("from-the-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, app("add", uuid, ne.image, "--name", "vol", "--volume", host+":/data:ro", "--exec", "/bin/sh", "--", "-c",
		"cat /data/f; touch /data/g 2>/dev/null && echo writable || echo read-only"))
	mustSucceed(t, app("start", uuid, "--app", "vol"))
	if v := ne.waitApp(t, uuid, "vol", stage0.AppExited); v.ExitCode == nil || *v.ExitCode != 0 {
		t.Errorf("app with a volume: %+v", v)
	}
	if l := mustSucceed(t, karman(t, ne.dir, "logs", "--app", "vol", uuid)).Stdout; l != "from-the-host\nread-only\n" {
		t.Errorf("app with a read-only volume logged %q", l)
	}
	mustSucceed(t, app("rm", uuid, "--app", "vol"))
	serving(t, addr, "hello-from-web")

	// Refusals, each leaving the pod as it was.
	assertOneLine254(t, app("add", uuid, ne.image, "--name", "web", "--exec", "/bin/true"), "web", "already")
	assertOneLine254(t, app("add", uuid, "oci:/no/such/layout:latest", "--name", "ghost"), "ghost")
	assertOneLine254(t, app("start", uuid, "--app", "nosuch"), "no app", "app list")
	assertOneLine254(t, app("add", uuid, ne.image, "--name", "bad", "--volume", "/no/such/dir:/mnt"), "/no/such/dir")
	for _, name := range []string{"ghost", "bad"} {
		if _, err := os.Lstat(filepath.Join(podDir, "apps", name)); err == nil {
			t.Errorf("refused app %s left its directory", name)
		}
		if dirs := appCgroups(uuid, name); len(dirs) != 0 {
			t.Errorf("refused app %s left cgroups: %v", name, dirs)
		}
	}
	if apps := ne.appList(t, uuid); len(apps) != 1 {
		t.Errorf("after refusals: %+v", apps)
	}
	serving(t, addr, "hello-from-web")

	// The pod lives until stopped; then apps are refused.
	mustSucceed(t, karman(t, ne.dir, "stop", uuid))
	ne.waitState(t, uuid, "exited", func(pi stage0.PodInfo) bool { return pi.State == stage0.Exited })
	assertOneLine254(t, app("add", uuid, ne.image, "--name", "late"), "not running", "--no-apps")
}

// TestAppsRaceAndKill: app commands racing on one pod resolve one at a
// time (one add of a name wins, one start of an app wins, a start racing
// an rm --force leaves the app gone); an `app add` killed with SIGKILL
// while it fetches its image frees the pod for the next one; the
// supervisor killed with SIGKILL while an app is being added fails the
// add, which leaves nothing of the app; and gc of the pod leaves nothing
// at all (leakcheck).
func TestAppsRaceAndKill(t *testing.T) {
	e := newGCEnv(t)
	uuid, podDir := e.emptyPod(t, "--net=default")

	// parallel runs the commands at once and returns their results.
	parallel := func(cmds ...[]string) []testenv.Result {
		out := make([]testenv.Result, len(cmds))
		var wg sync.WaitGroup
		for i, c := range cmds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out[i] = karman(t, e.dir, append([]string{"app"}, c...)...)
			}()
		}
		wg.Wait()
		return out
	}
	wins := func(what string, rs []testenv.Result, refusal string) {
		t.Helper()
		n := 0
		for _, r := range rs {
			switch {
			case r.Code == 0:
				n++
			default:
				assertOneLine254(t, r, refusal)
			}
		}
		if n != 1 {
			t.Errorf("%s: %d of %d won, want one", what, n, len(rs))
		}
	}
	add := []string{"add", uuid, e.image, "--name", "same", "--exec", "/bin/sleep", "--", "1000"}
	wins("adds of one name", parallel(add, add, add, add), "already")
	start := []string{"start", uuid, "--app", "same"}
	wins("starts of one app", parallel(start, start, start), "is running")
	var adds [][]string
	for i := range 3 {
		adds = append(adds, []string{"add", uuid, e.image, "--name", fmt.Sprintf("a%d", i), "--exec", "/bin/sleep", "--", "1000"})
	}
	for _, r := range parallel(adds...) {
		mustSucceed(t, r)
	}
	var startRm [][]string
	for i := range 3 {
		name := fmt.Sprintf("a%d", i)
		startRm = append(startRm, []string{"start", uuid, "--app", name}, []string{"rm", uuid, "--app", name, "--force"})
	}
	for i, r := range parallel(startRm...) {
		if i%2 == 1 {
			mustSucceed(t, r) // rm --force wins whatever the order
		} else if r.Code != 0 {
			assertOneLine254(t, r, "no app")
		}
	}
	if apps := e.appList(t, uuid); len(apps) != 1 || apps["same"].State != stage0.AppRunning {
		t.Errorf("after the races: %+v, want only app same, running", apps)
	}
	for i := range 3 {
		name := fmt.Sprintf("a%d", i)
		if _, err := os.Lstat(filepath.Join(podDir, "apps", name)); err == nil || len(appCgroups(uuid, name)) != 0 {
			t.Errorf("removed app %s left its directory or cgroups", name)
		}
	}

	// An image the registry holds back: the add waits in its fetch, with
	// the pod's app lock held.
	reg := newStallingRegistry(t)
	// stalledAdd starts an app add of that image and returns once it
	// waits for a blob, with the file its stderr goes to (a file: the
	// fetch is a child of its own, which a SIGKILL of app add leaves to
	// end by itself).
	stalledAdd := func(name string) (*exec.Cmd, string) {
		t.Helper()
		// A repository of its own, to tell its requests from those of
		// an earlier add's fetch that may still run.
		ref := reg.host + "/stall-" + name + "/busybox:1"
		pushed(t, ref, testimage.Options{Env: []string{"KARMAN_TEST=app-add-" + name}}, testimage.Busybox)
		reg.stall()
		stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
		if err != nil {
			t.Fatal(err)
		}
		defer stderr.Close()
		cmd := exec.Command(testenv.Binary(t), "--dir", e.dir, "--config-dir", filepath.Join(e.dir, "etc"),
			"app", "add", uuid, ref, "--name", name, "--exec", "/bin/sleep", "--", "1000")
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		timeout := time.After(time.Minute)
		for {
			select {
			case p := <-reg.stalled:
				if strings.Contains(p, "/stall-"+name+"/") {
					return cmd, stderr.Name()
				}
			case <-timeout:
				t.Fatal("app add never asked the registry for a blob")
			}
		}
	}
	cmd, _ := stalledAdd("killed")
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	reg.release() // its fetch, a child of its own, ends by itself
	// The killed add's lock went with it.
	mustSucceed(t, karman(t, e.dir, "app", "add", uuid, e.image, "--name", "after", "--exec", "/bin/true"))

	cmd, stderr := stalledAdd("orphan")
	killSupervisor(t, podDir)
	karman(t, e.dir, "status", "--wait=30s", uuid)
	reg.release()
	if err := cmd.Wait(); err == nil {
		t.Fatalf("app add into a pod whose supervisor was killed succeeded")
	}
	errText, _ := os.ReadFile(stderr)
	if msg := strings.TrimSpace(string(errText)); strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "orphan") {
		t.Errorf("app add's error is not one line naming the app: %q", msg)
	}
	if _, err := os.Lstat(filepath.Join(podDir, "apps", "orphan")); err == nil {
		t.Errorf("the failed add left apps/orphan")
	}
	if dirs := appCgroups(uuid, "orphan"); len(dirs) != 0 {
		t.Errorf("the failed add left cgroups: %v", dirs)
	}
	if pd, err := os.ReadFile(filepath.Join(podDir, "pod.json")); err != nil || strings.Contains(string(pd), `"orphan"`) {
		t.Errorf("pod.json names the failed app (%v)", err)
	}
	mustSucceed(t, karman(t, e.dir, "gc", "--all")) // the pods, then the network they made
	e.leaks.Check()
}

// TestAppStopLastApp: app stop of the only app of a pod that is not kept
// alive succeeds, and the pod ends with it, as with its last app's exit.
func TestAppStopLastApp(t *testing.T) {
	e := newPodEnv(t)
	uuid := strings.TrimSpace(mustSucceed(t, e.run(t, "--net=none", "--detach", e.image, "--exec", "/bin/sleep", "--", "1000")).Stdout)
	t.Cleanup(func() {
		karman(t, e.dir, "stop", "--force", uuid)
		karman(t, e.dir, "status", "--wait=30s", uuid)
	})
	pi := e.waitState(t, uuid, "app running", func(pi stage0.PodInfo) bool { return len(pi.Apps) == 1 && pi.Apps[0].PID != 0 })
	mustSucceed(t, karman(t, e.dir, "app", "stop", uuid, "--app", pi.Apps[0].Name, "--timeout", "10s"))
	pi = e.waitState(t, uuid, "exited", func(pi stage0.PodInfo) bool { return pi.State == stage0.Exited })
	if pi.ExitCode == nil || *pi.ExitCode != 143 || pi.Apps[0].State != stage0.AppExited {
		t.Errorf("pod after app stop of its last app: exit %v, app %+v; want 143 (SIGTERM), exited", pi.ExitCode, pi.Apps[0])
	}
}

// TestAppAddSupervisorKilledAnyStage: the supervisor of a pod is killed
// with SIGKILL at a spread of moments while `app add` runs, so that some
// kills land before the add reaches the pod, some while the pod's init
// handles it (mounts the app's root and volumes), some after. Each add
// either succeeded, and the pod's record names the app, or failed with
// one line and left nothing of the app; gc then leaves nothing at all
// (leakcheck).
func TestAppAddSupervisorKilledAnyStage(t *testing.T) {
	e := newGCEnv(t)
	vol := t.TempDir()
	add := func(uuid string) *exec.Cmd {
		return exec.Command(testenv.Binary(t), "--dir", e.dir, "--config-dir", filepath.Join(e.dir, "etc"),
			"app", "add", uuid, e.image, "--name", "late", "--volume", vol+":/data", "--exec", "/bin/sleep", "--", "1000")
	}
	// How long an add takes here: the kills spread over 0 to 1.5 times it.
	uuid, _ := e.emptyPod(t, "--net=none")
	t0 := time.Now()
	if out, err := add(uuid).CombinedOutput(); err != nil {
		t.Fatalf("app add: %v: %s", err, out)
	}
	took := time.Since(t0)
	mustSucceed(t, karman(t, e.dir, "stop", "--force", uuid))
	mustSucceed(t, karman(t, e.dir, "status", "--wait=30s", uuid))
	const rounds = 24
	failed, added, inPod := 0, 0, 0
	for i := range rounds {
		uuid, podDir := e.emptyPod(t, "--net=none")
		var stderr strings.Builder
		cmd := add(uuid)
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := took * time.Duration(i) * 3 / (2 * rounds)
		time.Sleep(delay)
		killSupervisor(t, podDir)
		err := cmd.Wait()
		karman(t, e.dir, "status", "--wait=30s", uuid)
		pd, _ := os.ReadFile(filepath.Join(podDir, "pod.json"))
		named := strings.Contains(string(pd), `"late"`)
		if err == nil {
			added++
			if !named {
				t.Errorf("kill after %v: app add succeeded but pod.json does not name the app", delay)
			}
			continue
		}
		failed++
		msg := strings.TrimSpace(stderr.String())
		if msg == "" || strings.Count(msg, "\n") != 0 {
			t.Errorf("kill after %v: app add's error is not one line: %q", delay, msg)
		}
		if strings.Contains(msg, "while handling the request") {
			inPod++
		}
		if named {
			t.Errorf("kill after %v: the failed add left the app in pod.json", delay)
		}
		if _, err := os.Lstat(filepath.Join(podDir, "apps", "late")); err == nil {
			t.Errorf("kill after %v: the failed add left apps/late", delay)
		}
	}
	t.Logf("an add took %v; of %d kills, %d failed the add (%d while the pod handled it), %d came after it", took, rounds, failed, inPod, added)
	if failed == 0 {
		t.Errorf("no add was cut short by the kill: the test proves nothing")
	}
	mustSucceed(t, karman(t, e.dir, "gc", "--all"))
	e.leaks.Check()
}

// emptyPod starts a pod of no apps on net (a --net flag), which the leak
// check tracks and the test stops at its end, and returns its UUID and
// directory once it started.
func (e *gcEnv) emptyPod(t *testing.T, net string) (string, string) {
	t.Helper()
	uuid := strings.TrimSpace(mustSucceed(t, e.run(t, net, "--no-apps")).Stdout)
	e.leaks.Track(uuid)
	e.uuids = append(e.uuids, uuid)
	t.Cleanup(func() {
		karman(t, e.dir, "stop", "--force", uuid)
		karman(t, e.dir, "status", "--wait=30s", uuid)
	})
	e.waitState(t, uuid, "started", func(pi stage0.PodInfo) bool { return !pi.Started.IsZero() })
	return uuid, filepath.Join(e.dir, "pods", "run", uuid)
}

// killSupervisor kills the supervisor of the running pod in podDir with
// SIGKILL.
func killSupervisor(t *testing.T, podDir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(podDir, "state", "supervisor.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the supervisor %d: %v", pid, err)
	}
}
