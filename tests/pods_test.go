package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

// podEnv is a data directory with a busybox image fetched into it.
type podEnv struct {
	dir   string
	image string
}

func newPodEnv(t *testing.T) *podEnv {
	t.Helper()
	testenv.RequireRoot(t, "pods need namespaces and mounts")
	layout := filepath.Join(t.TempDir(), "layout")
	if _, err := testimage.WriteLayout(layout, "latest", testimage.Must(t)(testimage.Busybox(testimage.Options{}))); err != nil {
		t.Fatal(err)
	}
	e := &podEnv{dir: t.TempDir(), image: "oci:" + layout + ":latest"}
	mustSucceed(t, karman(t, e.dir, "fetch", e.image))
	t.Cleanup(func() { e.assertNoLeaks(t) })
	return e
}

// assertNoLeaks collects every pod and checks that nothing of them is left:
// no pod directories, no mounts under the data directory, no leases.
func (e *podEnv) assertNoLeaks(t *testing.T) {
	t.Helper()
	var pods []stage0.PodInfo
	json.Unmarshal([]byte(karman(t, e.dir, "list", "--format", "json").Stdout), &pods)
	karman(t, e.dir, "gc", "--grace-period=0")
	for _, p := range pods {
		if dirs, _ := filepath.Glob("/sys/fs/cgroup/*/karman/" + p.UUID); len(dirs) != 0 {
			t.Errorf("cgroups of pod %s left: %v", p.UUID, dirs)
		}
	}
	for _, sd := range []string{"embryo", "prepared", "run", "exited-garbage", "garbage"} {
		if ents, _ := os.ReadDir(filepath.Join(e.dir, "pods", sd)); len(ents) != 0 {
			t.Errorf("pods/%s has %d entries after gc", sd, len(ents))
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), e.dir+"/") {
		t.Errorf("mounts left under %s:\n%s", e.dir, mi)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.dir, "images/leases")); len(ents) != 0 {
		t.Errorf("%d image leases left after gc", len(ents))
	}
	// No supervisor of this data directory still runs, and no pod init
	// anywhere lost its supervisor.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		cmdline := string(b)
		if strings.Contains(cmdline, "\x00"+e.dir+"\x00") {
			t.Errorf("supervisor %s left: %q", filepath.Dir(p), cmdline)
		}
		if strings.Contains(cmdline, "__stage1-init") {
			st, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "status"))
			if strings.Contains(string(st), "\nPPid:\t1\n") {
				t.Errorf("orphaned pod init %s", filepath.Dir(p))
			}
		}
	}
}

func (e *podEnv) run(t *testing.T, args ...string) testenv.Result {
	t.Helper()
	return karman(t, e.dir, append([]string{"run"}, args...)...)
}

func (e *podEnv) status(t *testing.T, uuid string) stage0.PodInfo {
	t.Helper()
	r := mustSucceed(t, karman(t, e.dir, "status", "--format", "json", uuid))
	var pi stage0.PodInfo
	if err := json.Unmarshal([]byte(r.Stdout), &pi); err != nil {
		t.Fatalf("status json: %v\n%s", err, r.Stdout)
	}
	return pi
}

func TestRunExitCodes(t *testing.T) {
	e := newPodEnv(t)
	tests := []struct {
		name string
		args []string
		code int
		text string
	}{
		{"passes through", []string{"--exec", "/bin/sh", "--", "-c", "exit 7"}, 7, ""},
		{"success", []string{"--exec", "/bin/true"}, 0, ""},
		{"not found", []string{"--exec", "/no/such/program"}, 127, "/no/such/program"},
		{"not in PATH", []string{"--exec", "nosuchprogram"}, 127, "nosuchprogram"},
		{"not executable", []string{"--exec", "/etc/passwd"}, 126, "/etc/passwd"},
		{"killed by a signal", []string{"--exec", "/bin/sh", "--", "-c", "kill -9 $$"}, 137, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.run(t, append([]string{e.image}, tc.args...)...)
			if r.Code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", r.Code, tc.code, r)
			}
			if !strings.Contains(r.Stderr, tc.text) {
				t.Errorf("stderr %q does not name %q", r.Stderr, tc.text)
			}
		})
	}
}

func TestRunAppConfig(t *testing.T) {
	e := newPodEnv(t)
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "in"), []byte("from-host"), 0o644)
	r := e.run(t, "--hostname", "podhost", "--volume", host+":/mnt/vol:ro", e.image,
		"--env", "FOO=bar", "--user", "karman", "--workdir", "/tmp",
		"--exec", "/bin/sh", "--", "-c",
		`echo "$FOO $(id -u):$(id -g) $(pwd) $(hostname) $(cat /etc/hostname) $(cat /mnt/vol/in) pid1=$(cat /proc/1/comm) gomaxprocs=${GOMAXPROCS-unset}"; touch /mnt/vol/x 2>/dev/null && echo writable; ls /dev/null /dev/zero /dev/urandom >/dev/null && echo devs`)
	if r.Code != 0 {
		t.Fatalf("%s", r)
	}
	want := "bar 1000:1000 /tmp podhost podhost from-host pid1="
	if !strings.HasPrefix(r.Stdout, want) || strings.Contains(r.Stdout, "writable") || !strings.Contains(r.Stdout, "devs") {
		t.Errorf("app saw %q, want prefix %q, a read-only volume and devices", r.Stdout, want)
	}
	if strings.Contains(r.Stdout, "pid1=sh") {
		t.Errorf("the app is PID 1; the pod init should be")
	}
	if !strings.Contains(r.Stdout, "gomaxprocs=unset") {
		t.Errorf("the app inherited the stage1 processes' GOMAXPROCS: %q", r.Stdout)
	}
}

func TestRunOutputLogsAndList(t *testing.T) {
	e := newPodEnv(t)
	uuidFile := filepath.Join(t.TempDir(), "uuid")
	r := e.run(t, "--uuid-file-save", uuidFile, e.image, "--exec", "/bin/sh", "--", "-c", "echo out-line; echo err-line >&2; exit 3")
	if r.Code != 3 || !strings.Contains(r.Stdout, "out-line") || !strings.Contains(r.Stderr, "err-line") {
		t.Fatalf("stdio did not pass through:\n%s", r)
	}
	b, err := os.ReadFile(uuidFile)
	if err != nil {
		t.Fatal(err)
	}
	uuid := strings.TrimSpace(string(b))
	logs := mustSucceed(t, karman(t, e.dir, "logs", uuid[:8]))
	if !strings.Contains(logs.Stdout, "out-line") || !strings.Contains(logs.Stdout, "err-line") {
		t.Errorf("logs = %q", logs.Stdout)
	}
	pi := e.status(t, uuid[:6])
	if pi.UUID != uuid || pi.State != stage0.Exited || pi.ExitCode == nil || *pi.ExitCode != 3 || len(pi.Apps) != 1 || pi.Apps[0].ImageDigest == "" {
		t.Errorf("status = %+v", pi)
	}
	r = mustSucceed(t, karman(t, e.dir, "list", "--format", "json"))
	var pods []stage0.PodInfo
	json.Unmarshal([]byte(r.Stdout), &pods)
	if len(pods) != 1 || pods[0].UUID != uuid {
		t.Errorf("list = %s", r.Stdout)
	}
	mustSucceed(t, karman(t, e.dir, "status", "--uuid-file", uuidFile))
	mustSucceed(t, karman(t, e.dir, "rm", "--uuid-file", uuidFile))
	if r := karman(t, e.dir, "status", uuid); r.Code != 254 || !strings.Contains(r.Stderr, "no pod") {
		t.Errorf("status after rm:\n%s", r)
	}
}

func TestRunMultiApp(t *testing.T) {
	e := newPodEnv(t)
	uuidFile := filepath.Join(t.TempDir(), "uuid")
	r := e.run(t, "--uuid-file-save", uuidFile,
		e.image, "--exec", "/bin/sh", "--", "-c", "sleep 0.2; exit 3", "---",
		e.image, "--exec", "/bin/sh", "--", "-c", "echo second; exit 0")
	if r.Code != 3 || !strings.Contains(r.Stdout, "second") {
		t.Fatalf("multi-app pod: %s", r)
	}
	b, _ := os.ReadFile(uuidFile)
	pi := e.status(t, strings.TrimSpace(string(b)))
	if len(pi.Apps) != 2 || pi.Apps[0].ExitCode == nil || *pi.Apps[0].ExitCode != 3 || pi.Apps[1].ExitCode == nil || *pi.Apps[1].ExitCode != 0 {
		t.Errorf("apps = %+v", pi.Apps)
	}
	if pi.Apps[0].Name == pi.Apps[1].Name {
		t.Errorf("apps share the name %q", pi.Apps[0].Name)
	}
}

// TestRunManyApps: a pod of more apps than one packet of the supervisor's
// socket has room for the descriptors of (two output pipes per app, and
// the app's cgroup files) starts every app, each with its own output.
func TestRunManyApps(t *testing.T) {
	e := newPodEnv(t)
	const n = 130
	var args []string
	for i := range n {
		if i > 0 {
			args = append(args, "---")
		}
		args = append(args, e.image, "--exec", "/bin/echo", "--", fmt.Sprintf("app %d", i))
	}
	r := e.run(t, args...)
	if r.Code != 0 {
		t.Fatalf("a pod of %d apps: %s", n, r)
	}
	for i := range n {
		if !strings.Contains(r.Stdout, fmt.Sprintf("app %d\n", i)) {
			t.Errorf("no output from app %d: %s", i, r)
			break
		}
	}
}

// startPod starts `karman run` in the background and waits until it runs.
func (e *podEnv) startPod(t *testing.T, args ...string) (*exec.Cmd, string) {
	t.Helper()
	return e.startPodEnv(t, nil, args...)
}

// startPodEnv is startPod with env added to karman's environment.
func (e *podEnv) startPodEnv(t *testing.T, env []string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	uuidFile := filepath.Join(t.TempDir(), "uuid")
	cmd := exec.Command(testenv.Binary(t), noNet(append([]string{"--dir", e.dir, "--config-dir", filepath.Join(e.dir, "etc"), "run", "--uuid-file-save", uuidFile}, args...))...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	var last stage0.PodInfo
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(uuidFile); err == nil && len(b) > 0 {
			uuid := strings.TrimSpace(string(b))
			if last = e.status(t, uuid); last.State == stage0.Running && !last.Started.IsZero() {
				return cmd, uuid
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("pod did not start within 30 s (last status %+v); karman run said:\n%s", last, stderr)
	return nil, ""
}

// syncBuffer is a bytes.Buffer that a command writes while a test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitLog waits until the pod's log holds want: an app counts as started
// at its execve, and a shell sets its traps a moment later, so tests that
// signal a trap wait for the app to say it is set.
func (e *podEnv) waitLog(t *testing.T, uuid, want string) {
	t.Helper()
	for i := 0; !strings.Contains(karman(t, e.dir, "logs", uuid).Stdout, want); i++ {
		if i == 200 {
			t.Fatalf("pod %s did not log %q within 10 s", uuid, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStopGracefulAndForced(t *testing.T) {
	e := newPodEnv(t)
	// The app traps TERM and exits 0: a graceful stop.
	cmd, uuid := e.startPod(t, e.image, "--exec", "/bin/sh", "--", "-c", "trap 'exit 0' TERM; echo trapped; while true; do sleep 0.05; done")
	e.waitLog(t, uuid, "trapped")
	mustSucceed(t, karman(t, e.dir, "stop", uuid))
	if err := cmd.Wait(); err != nil {
		t.Errorf("gracefully stopped pod: %v", err)
	}
	if pi := e.status(t, uuid); pi.State != stage0.Exited || pi.ExitCode == nil || *pi.ExitCode != 0 {
		t.Errorf("after stop: %+v", pi)
	}
	// The app ignores TERM: SIGKILL after the stop timeout.
	cmd, uuid = e.startPod(t, "--stop-timeout", "300ms", e.image, "--exec", "/bin/sh", "--", "-c", "trap '' TERM; echo trapped; while true; do sleep 0.05; done")
	e.waitLog(t, uuid, "trapped")
	mustSucceed(t, karman(t, e.dir, "stop", uuid))
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 137 {
		t.Errorf("pod that ignored TERM exited %d, want 137", code)
	}
	r := mustSucceed(t, karman(t, e.dir, "status", "--wait=10s", uuid))
	if !strings.Contains(r.Stdout, "state=exited") {
		t.Errorf("status --wait: %s", r.Stdout)
	}
}

func TestSignalForwarding(t *testing.T) {
	e := newPodEnv(t)
	cmd, uuid := e.startPod(t, e.image, "--exec", "/bin/sh", "--", "-c", "trap 'echo got-hup; exit 5' HUP; echo trapped; while true; do sleep 0.05; done")
	e.waitLog(t, uuid, "trapped")
	cmd.Process.Signal(syscall.SIGHUP)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 5 {
		t.Errorf("exit %d after SIGHUP, want 5 (the app's trap)", code)
	}
	logs := mustSucceed(t, karman(t, e.dir, "logs", uuid))
	if !strings.Contains(logs.Stdout, "got-hup") {
		t.Errorf("logs = %q", logs.Stdout)
	}
}

func TestEnter(t *testing.T) {
	e := newPodEnv(t)
	_, uuid := e.startPod(t, "--hostname", "entered", e.image, "--exec", "/bin/sleep", "--", "1000")
	r := karman(t, e.dir, "enter", uuid, "/bin/sh", "-c", "cat /etc/hostname; exit 4")
	if r.Code != 4 || strings.TrimSpace(r.Stdout) != "entered" {
		t.Errorf("enter: %s", r)
	}
	mustSucceed(t, karman(t, e.dir, "stop", "--force", uuid))
}

// TestSupervisorKilled: a supervisor killed with SIGKILL leaves a pod that
// list shows as exited and that gc cleans completely.
func TestSupervisorKilled(t *testing.T) {
	e := newPodEnv(t)
	cmd, uuid := e.startPod(t, e.image, "--exec", "/bin/sleep", "--", "1000")
	initPID, err := os.ReadFile(filepath.Join(e.dir, "pods", "run", uuid, poddir.InitPID))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	// The init (forked by stage0 before it exec'd the supervisor) dies
	// with the supervisor, by its parent-death signal, and the pod with
	// it: before any gc.
	initProc := "/proc/" + strings.TrimSpace(string(initPID))
	for i := 0; ; i++ {
		if _, err := os.Stat(initProc); os.IsNotExist(err) {
			break
		}
		if i == 200 {
			t.Fatalf("the pod init %s outlived its supervisor by 10 s", initProc)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r := mustSucceed(t, karman(t, e.dir, "status", "--wait=20s", uuid))
	if !strings.Contains(r.Stdout, "state=exited") {
		t.Errorf("after SIGKILL: %s", r.Stdout)
	}
	r = mustSucceed(t, karman(t, e.dir, "gc", "--grace-period=0"))
	if !strings.Contains(r.Stdout, "removed "+uuid) {
		t.Errorf("gc: %s", r.Stdout)
	}
	// No process of the pod survives: nothing runs `sleep 1000` from our pod.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, _ := os.ReadFile(p); strings.Contains(string(b), "sleep\x001000") {
			if env, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "environ")); strings.Contains(string(env), uuid) {
				t.Errorf("process %s of the killed pod survived", p)
			}
		}
	}
}

// TestRunGCCyclesLeaveNothing runs many pods, some at once, and collects
// them; the cleanup checks that nothing is left.
func TestRunGCCyclesLeaveNothing(t *testing.T) {
	e := newPodEnv(t)
	for range 5 {
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				if r := e.run(t, e.image, "--exec", "/bin/true"); r.Code != 0 {
					t.Errorf("run: %s", r)
				}
			})
		}
		wg.Wait()
		mustSucceed(t, karman(t, e.dir, "gc", "--grace-period=0"))
	}
}

func TestRunRefusesBadInput(t *testing.T) {
	e := newPodEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--net=bogus", e.image}, "--net=bogus"},
		{[]string{"--pull-policy=never", "127.0.0.1:1/not/stored:v1"}, "not in the store"},
		{[]string{e.image, "--user", "nosuchuser"}, "no such user"},
		{[]string{e.image, "--volume", "relative:/x"}, "absolute"},
		{[]string{e.image, "stray"}, "after --"},
	} {
		r := e.run(t, tc.args...)
		if r.Code != 254 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("%v: want exit 254 saying %q:\n%s", tc.args, tc.want, r)
		}
	}
}

// TestInitReapsOrphans: an app leaves orphans that exit; the pod's init,
// PID 1, reaps them, so no zombie stays in the pod.
func TestInitReapsOrphans(t *testing.T) {
	e := newPodEnv(t)
	r := e.run(t, e.image, "--exec", "/bin/sh", "--", "-c",
		`for i in 1 2 3 4 5; do (sh -c 'exit 0' &); done; sleep 0.5; ps -o stat,pid,comm; echo zombies=$(ps -o stat | grep -c '^Z')`)
	if r.Code != 0 || !strings.Contains(r.Stdout, "zombies=0") {
		t.Errorf("zombies left in the pod:\n%s", r)
	}
}

func TestConcurrentLifecycleCommands(t *testing.T) {
	e := newPodEnv(t)
	// gc against gc: several collectors on the same exited pods.
	for range 4 {
		mustSucceed(t, e.run(t, e.image, "--exec", "/bin/true"))
	}
	var wg sync.WaitGroup
	results := make([]testenv.Result, 3)
	for i := range results {
		wg.Go(func() { results[i] = karman(t, e.dir, "gc", "--grace-period=0") })
	}
	wg.Wait()
	removed := 0
	for _, r := range results {
		if r.Code != 0 {
			t.Errorf("concurrent gc failed:\n%s", r)
		}
		removed += strings.Count(r.Stdout, "removed ")
	}
	if removed != 4 {
		t.Errorf("concurrent gcs removed %d pods in all, want 4 (each once)", removed)
	}

	// stop against gc: gc never collects a running pod, stop wins.
	cmd, uuid := e.startPod(t, e.image, "--exec", "/bin/sleep", "--", "1000")
	wg.Go(func() {
		if r := karman(t, e.dir, "gc", "--grace-period=0"); r.Code != 0 {
			t.Errorf("gc during stop:\n%s", r)
		}
	})
	mustSucceed(t, karman(t, e.dir, "stop", uuid))
	wg.Wait()
	cmd.Wait()
	// rm of a running pod is refused; of an exited one it works.
	_, uuid = e.startPod(t, e.image, "--exec", "/bin/sleep", "--", "1000")
	if r := karman(t, e.dir, "rm", uuid); r.Code != 254 || !strings.Contains(r.Stderr, "stop it first") {
		t.Errorf("rm of a running pod:\n%s", r)
	}
	mustSucceed(t, karman(t, e.dir, "stop", "--force", uuid))
	mustSucceed(t, karman(t, e.dir, "status", "--wait=20s", uuid))
	mustSucceed(t, karman(t, e.dir, "rm", uuid))
}

func TestDetachAndFollowLogs(t *testing.T) {
	e := newPodEnv(t)
	r := mustSucceed(t, e.run(t, "--detach", e.image, "--exec", "/bin/sh", "--", "-c", "for i in 1 2 3; do echo tick $i; sleep 0.1; done; exit 6"))
	uuid := strings.TrimSpace(r.Stdout)
	logs := mustSucceed(t, karman(t, e.dir, "logs", "-f", uuid))
	if logs.Stdout != "tick 1\ntick 2\ntick 3\n" {
		t.Errorf("logs -f = %q", logs.Stdout)
	}
	pi := e.status(t, uuid)
	if pi.State != stage0.Exited || pi.ExitCode == nil || *pi.ExitCode != 6 {
		t.Errorf("detached pod after logs -f: %+v", pi)
	}
}

// TestNotifyReady runs a pod under a fake NOTIFY_SOCKET and waits for
// READY=1, which karman sends once the app has started.
func TestNotifyReady(t *testing.T) {
	e := newPodEnv(t)
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	uuidFile := filepath.Join(t.TempDir(), "uuid")
	cmd := exec.Command(testenv.Binary(t), "--dir", e.dir, "--config-dir", filepath.Join(e.dir, "etc"), "run", "--net=none", "--uuid-file-save", uuidFile, e.image, "--exec", "/bin/sleep", "--", "1000")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	if !strings.Contains(string(buf[:n]), "READY=1") {
		t.Fatalf("notification %q lacks READY=1", buf[:n])
	}
	b, _ := os.ReadFile(uuidFile)
	uuid := strings.TrimSpace(string(b))
	if pi := e.status(t, uuid); pi.State != stage0.Running || len(pi.Apps) != 1 || pi.Apps[0].PID == 0 {
		t.Errorf("at READY=1 the app should run: %+v", pi)
	}
	mustSucceed(t, karman(t, e.dir, "stop", uuid))
	cmd.Wait()
}

func TestPrepareRunPreparedMarkOnly(t *testing.T) {
	e := newPodEnv(t)
	r := mustSucceed(t, karman(t, e.dir, "prepare", e.image, "--exec", "/bin/sh", "--", "-c", "exit 9"))
	uuid := strings.TrimSpace(r.Stdout)
	if pi := e.status(t, uuid); pi.State != stage0.Prepared {
		t.Fatalf("after prepare: %+v", pi)
	}
	if r := karman(t, e.dir, "run-prepared", uuid[:8]); r.Code != 9 {
		t.Fatalf("run-prepared: %s", r)
	}
	if r := karman(t, e.dir, "run-prepared", uuid); r.Code != 254 || !strings.Contains(r.Stderr, "not prepared") {
		t.Errorf("second run-prepared: %s", r)
	}
	r = mustSucceed(t, karman(t, e.dir, "gc", "--mark-only"))
	if !strings.Contains(r.Stdout, "marked "+uuid) || strings.Contains(r.Stdout, "removed") {
		t.Errorf("gc --mark-only: %q", r.Stdout)
	}
	if pi := e.status(t, uuid); pi.State != stage0.ExitedGarbage {
		t.Errorf("after mark: %s", pi.State)
	}
	// Within the grace period the pod stays.
	r = mustSucceed(t, karman(t, e.dir, "gc", "--grace-period=1h"))
	if strings.Contains(r.Stdout, "removed") {
		t.Errorf("gc removed a pod within its grace period: %q", r.Stdout)
	}
}

func TestEnterMultiApp(t *testing.T) {
	e := newPodEnv(t)
	_, uuid := e.startPod(t, e.image, "--exec", "/bin/sleep", "--", "1000", "---", e.image, "--exec", "/bin/sh", "--", "-c", "echo second > /tmp/who; sleep 1000")
	pi := e.status(t, uuid)
	if len(pi.Apps) != 2 {
		t.Fatalf("apps: %+v", pi.Apps)
	}
	if r := karman(t, e.dir, "enter", uuid, "/bin/true"); r.Code != 254 || !strings.Contains(r.Stderr, "--app") {
		t.Errorf("enter without --app in a two-app pod: %s", r)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := karman(t, e.dir, "enter", "--app", pi.Apps[1].Name, uuid, "/bin/cat", "/tmp/who")
		if r.Code == 0 && strings.TrimSpace(r.Stdout) == "second" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("enter --app %s: %s", pi.Apps[1].Name, r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Each app has its own root: the first app does not see the file.
	if r := karman(t, e.dir, "enter", "--app", pi.Apps[0].Name, uuid, "/bin/cat", "/tmp/who"); r.Code == 0 {
		t.Errorf("apps share a root filesystem: %s", r)
	}
	mustSucceed(t, karman(t, e.dir, "stop", uuid))
}

// TestAppsRunWithDefaultCapabilities: apps (and commands run with enter)
// get the classic container capability set and no_new_privs; what lies
// outside, such as mounting (CAP_SYS_ADMIN), is refused.
func TestAppsRunWithDefaultCapabilities(t *testing.T) {
	e := newPodEnv(t)
	const defaultSet = "00000000a80425fb"
	script := `grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; mount -t tmpfs none /mnt 2>/dev/null && echo mounted; true`
	r := mustSucceed(t, e.run(t, e.image, "--exec", "/bin/sh", "--", "-c", script))
	for _, want := range []string{"CapEff:\t" + defaultSet, "CapBnd:\t" + defaultSet, "NoNewPrivs:\t1"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("root app: %q lacks %q", r.Stdout, want)
		}
	}
	if strings.Contains(r.Stdout, "mounted") {
		t.Errorf("an app could mount: %q", r.Stdout)
	}
	r = mustSucceed(t, e.run(t, e.image, "--user", "karman", "--exec", "/bin/sh", "--", "-c", script))
	if !strings.Contains(r.Stdout, "CapEff:\t0000000000000000") || !strings.Contains(r.Stdout, "CapBnd:\t"+defaultSet) {
		t.Errorf("non-root app: %q", r.Stdout)
	}
	_, uuid := e.startPod(t, e.image, "--exec", "/bin/sleep", "--", "1000")
	r = karman(t, e.dir, "enter", uuid, "/bin/sh", "-c", script)
	if r.Code != 0 || !strings.Contains(r.Stdout, "CapBnd:\t"+defaultSet) || strings.Contains(r.Stdout, "mounted") {
		t.Errorf("enter: %s", r)
	}
	mustSucceed(t, karman(t, e.dir, "stop", "--force", uuid))
}

// TestMaskedAndReadOnlyPaths: what of /proc and /sys leaks the host reads
// empty, and the kernel's tunables are read-only.
func TestMaskedAndReadOnlyPaths(t *testing.T) {
	e := newPodEnv(t)
	r := mustSucceed(t, e.run(t, e.image, "--exec", "/bin/sh", "--", "-c",
		`for f in /proc/keys /proc/timer_list /proc/sched_debug; do [ -e $f ] && echo "$f=$(wc -c < $f)"; done
ls -A /sys/firmware | wc -l | sed 's/^/firmware=/'
touch /sys/firmware/x 2>/dev/null || echo firmware=ro
printf x | dd of=/proc/sys/kernel/hostname 2>&1 | grep -q 'Read-only' && echo sysctl=ro
cat /proc/sys/kernel/hostname >/dev/null && echo sysctl=readable`))
	for _, want := range []string{"/proc/keys=0", "firmware=0", "firmware=ro", "sysctl=ro", "sysctl=readable"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("app saw %q; want %q", r.Stdout, want)
		}
	}
	if _, err := os.Stat("/proc/timer_list"); err == nil && !strings.Contains(r.Stdout, "/proc/timer_list=0") {
		t.Errorf("/proc/timer_list not masked: %q", r.Stdout)
	}
}

// TestPodsRunStage1Supervisor: however a pod is run (in the foreground,
// interactive, under a NOTIFY_SOCKET, with the notify relay, detached),
// its supervisor is karman-stage1 from the start (in the foreground the
// very process that `karman run` was: same PID), and the init is
// karman-stage1 too, the supervisor's child: neither long-lived process
// of a pod carries the CLI, the image store or the cgroup library.
func TestPodsRunStage1Supervisor(t *testing.T) {
	e := newPodEnv(t)
	want := filepath.Join(filepath.Dir(testenv.Binary(t)), poddir.BinaryName)
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sleep := []string{e.image, "--exec", "/bin/sleep", "--", "1000"}
	for _, tc := range []struct {
		name   string
		flags  []string
		env    []string
		detach bool
	}{
		{name: "foreground"},
		{name: "interactive", flags: []string{"--interactive"}},
		{name: "notify", env: []string{"NOTIFY_SOCKET=" + sock}},
		{name: "notify relay", flags: []string{"--notify-app"}, env: []string{"NOTIFY_SOCKET=" + sock}},
		{name: "detached", flags: []string{"--detach"}, detach: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var uuid string
			runPID := 0
			if tc.detach {
				r := mustSucceed(t, e.run(t, append(tc.flags, sleep...)...))
				uuid = strings.TrimSpace(r.Stdout)
				for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
					if pi := e.status(t, uuid); pi.State == stage0.Running && !pi.Started.IsZero() {
						break
					}
				}
			} else {
				var cmd *exec.Cmd
				cmd, uuid = e.startPodEnv(t, tc.env, append(tc.flags, sleep...)...)
				runPID = cmd.Process.Pid
			}
			t.Cleanup(func() { karman(t, e.dir, "stop", "--force", uuid) })
			podDir := filepath.Join(e.dir, "pods", "run", uuid)
			pids := map[string]string{}
			for _, f := range []string{poddir.SupervisorPID, poddir.InitPID} {
				b, err := os.ReadFile(filepath.Join(podDir, f))
				if err != nil {
					t.Fatal(err)
				}
				pid := strings.TrimSpace(string(b))
				pids[f] = pid
				if exe, err := os.Readlink("/proc/" + pid + "/exe"); err != nil || exe != want {
					t.Errorf("%s: process %s runs %q (%v), want %s", f, pid, exe, err, want)
				}
				// One P each: a second costs a pod some 400 KiB (docs/pods.md).
				if env, err := os.ReadFile("/proc/" + pid + "/environ"); err != nil || !slices.Contains(strings.Split(string(env), "\x00"), "GOMAXPROCS=1") {
					t.Errorf("%s: process %s does not run with GOMAXPROCS=1 (%v)", f, pid, err)
				}
			}
			if sup := pids[poddir.SupervisorPID]; runPID != 0 && sup != strconv.Itoa(runPID) {
				t.Errorf("supervisor PID %s, want the PID of karman run, %d", sup, runPID)
			}
			st, _ := os.ReadFile("/proc/" + pids[poddir.InitPID] + "/status")
			if !strings.Contains(string(st), "\nPPid:\t"+pids[poddir.SupervisorPID]+"\n") {
				t.Errorf("the init %s is not the supervisor's child:\n%s", pids[poddir.InitPID], st)
			}
			mustSucceed(t, karman(t, e.dir, "stop", uuid))
			// The pod has ended once its supervisor released the lock (a
			// detached one is no child of the test's to wait for).
			for end := time.Now().Add(30 * time.Second); e.status(t, uuid).State == stage0.Running; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(end) {
					t.Fatalf("pod %s still runs 30 s after stop", uuid)
				}
			}
		})
	}
}

// TestMissingStage1Binary: a karman without karman-stage1 beside it (and
// no $KARMAN_STAGE1) refuses to run a pod, saying what is missing, where
// it looked and how to install it, rather than supervising the pod some
// other way; nothing of the pod is left.
func TestMissingStage1Binary(t *testing.T) {
	e := newPodEnv(t)
	dir := t.TempDir()
	b, err := os.ReadFile(testenv.Binary(t))
	if err != nil {
		t.Fatal(err)
	}
	alone := filepath.Join(dir, "karman")
	if err := os.WriteFile(alone, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(alone, "--dir", e.dir, "--config-dir", filepath.Join(e.dir, "etc"), "run", "--net=none", e.image, "--exec", "/bin/echo", "--", "ran")
	cmd.Env = slices.DeleteFunc(os.Environ(), func(v string) bool { return strings.HasPrefix(v, "KARMAN_STAGE1=") })
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Run()
	msg := strings.TrimSpace(stderr.String())
	if code := cmd.ProcessState.ExitCode(); code != 254 || strings.Contains(msg, "\n") || stdout.Len() > 0 {
		t.Fatalf("run without %s: exit %d, stdout %q, stderr %q; want 254 and one line", poddir.BinaryName, code, stdout.String(), msg)
	}
	for _, want := range []string{"karman: ", filepath.Join(dir, poddir.BinaryName), "make install", "KARMAN_STAGE1"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error %q does not say %q", msg, want)
		}
	}
	for _, state := range []string{"embryo", "prepared", "run"} {
		if ents, _ := os.ReadDir(filepath.Join(e.dir, "pods", state)); len(ents) > 0 {
			t.Errorf("a pod was left in pods/%s: %v", state, ents)
		}
	}
}

// TestBadStage1Binary: a stage1 binary that is missing or that another
// user could replace is refused before the pod starts, and nothing of the
// pod is left (the cleanup checks pod directories and cgroups).
func TestBadStage1Binary(t *testing.T) {
	e := newPodEnv(t)
	writable := filepath.Join(t.TempDir(), "stage1")
	b, err := os.ReadFile(filepath.Join(filepath.Dir(testenv.Binary(t)), poddir.BinaryName))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(writable, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(writable, 0o777); err != nil {
		t.Fatal(err)
	}
	for bin, want := range map[string]string{
		"/nonexistent/karman-stage1": "no such file",
		writable:                     "could be replaced by another user",
	} {
		r := testenv.Run(t, []string{"KARMAN_STAGE1=" + bin}, "--dir", e.dir, "--config-dir", filepath.Join(e.dir, "etc"),
			"run", "--memory", "64M", e.image, "--exec", "/bin/true")
		if r.Code != 254 || !strings.Contains(r.Stderr, want) || !strings.Contains(r.Stderr, bin) {
			t.Errorf("KARMAN_STAGE1=%s: want exit 254 saying %q:\n%s", bin, want, r)
		}
	}
}

// TestInitSetupFailureIsReported: when the init fails to mount the pod,
// here because a volume's source vanished between prepare and
// run-prepared, karman says why (the init's report, through the
// supervisor), exits 254 and leaves no mount behind.
func TestInitSetupFailureIsReported(t *testing.T) {
	e := newPodEnv(t)
	vol := filepath.Join(t.TempDir(), "vol")
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	r := mustSucceed(t, karman(t, e.dir, "prepare", "--volume", vol+":/mnt/vol", e.image, "--exec", "/bin/true"))
	uuid := strings.TrimSpace(r.Stdout)
	if err := os.Remove(vol); err != nil {
		t.Fatal(err)
	}
	r = karman(t, e.dir, "run-prepared", uuid)
	if r.Code != 254 || !strings.Contains(r.Stderr, vol) || strings.Contains(r.Stderr, "broken pipe") || strings.Contains(r.Stderr, "no bootstrap data") {
		t.Fatalf("run-prepared with a vanished volume: want exit 254 and an error naming %s\n%s", vol, r)
	}
	mustSucceed(t, karman(t, e.dir, "gc", "--grace-period=0"))
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), uuid) {
		t.Errorf("a mount of pod %s is left:\n%s", uuid, mounts)
	}
}

// TestLeanKarmanWithoutFull: the lean karman runs stored images by itself;
// for what karman-full does (fetch, trust, verify, agent, and the fetches
// of a run), a lean karman without it beside says what to install, and
// leaves no pod behind.
func TestLeanKarmanWithoutFull(t *testing.T) {
	e := newPodEnv(t)
	bin := testenv.Binary(t)
	if _, err := os.Stat(filepath.Join(filepath.Dir(bin), "karman-full")); err != nil {
		testenv.Missing(t, "a lean karman under test with karman-full beside it ("+bin+" has none)", "make build; KARMAN_BINARY=$PWD/bin/karman, as make test sets")
	}
	dir := t.TempDir()
	for _, name := range []string{"karman", poddir.BinaryName} {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(bin), name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	lean := func(args ...string) testenv.Result {
		t.Helper()
		cmd := exec.Command(filepath.Join(dir, "karman"), append([]string{"--dir", e.dir, "--config-dir", filepath.Join(e.dir, "etc")}, args...)...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.Run()
		return testenv.Result{Stdout: stdout.String(), Stderr: stderr.String(), Code: cmd.ProcessState.ExitCode()}
	}
	if r := lean("run", "--net=none", e.image, "--exec", "/bin/echo", "--", "stored"); r.Code != 0 || r.Stdout != "stored\n" {
		t.Errorf("a stored image without karman-full:\n%s", r)
	}
	for _, args := range [][]string{
		{"fetch", e.image},
		{"trust", "list"},
		{"run", "--net=none", "--pull-policy=update", e.image, "--exec", "/bin/true"},
	} {
		r := lean(args...)
		if r.Code != 254 || !strings.Contains(r.Stderr, "karman-full is not installed beside karman") || strings.Count(r.Stderr, "\n") != 1 {
			t.Errorf("%q without karman-full: want exit 254 and one line saying so:\n%s", args, r)
		}
	}
}
