package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/karman-project/karman/agentapi"
	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/tests/testenv"
	"github.com/karman-project/karman/tests/testimage"
	"github.com/karman-project/karman/tests/testregistry"
)

// freeTCPPort returns a TCP port free on every address a moment ago.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// agentEnv is a data directory with a busybox image fetched into it and a
// karman agent serving it.
type agentEnv struct {
	*podEnv
	sock   string
	cmd    *exec.Cmd
	exited chan struct{}
	log    *os.File
	c      *agentapi.Client
	// env is added to the agent's environment.
	env []string
}

func newAgentEnv(t *testing.T) *agentEnv {
	t.Helper()
	return newAgentEnvOn(t, newPodEnv(t))
}

// newAgentEnvOn is newAgentEnv on an existing data directory (a netEnv's,
// say).
func newAgentEnvOn(t *testing.T, pe *podEnv) *agentEnv {
	t.Helper()
	e := &agentEnv{podEnv: pe}
	e.sock = filepath.Join(e.dir, "agent.sock")
	var err error
	if e.log, err = os.Create(filepath.Join(t.TempDir(), "agent.log")); err != nil {
		t.Fatal(err)
	}
	// Registered after newPodEnv's leak check, so it runs before it:
	// stop the agent, then every pod it left running.
	t.Cleanup(func() {
		e.kill(t)
		e.stopAll(t)
		if t.Failed() {
			b, _ := os.ReadFile(e.log.Name())
			t.Logf("agent log:\n%s", b)
		}
	})
	if e.c, err = agentapi.NewClient("unix://"+e.sock, agentapi.ClientOptions{}); err != nil {
		t.Fatal(err)
	}
	return e
}

// start starts the agent with extra flags and waits until it answers.
func (e *agentEnv) start(t *testing.T, flags ...string) {
	t.Helper()
	args := append([]string{"--dir", e.dir, "--config-dir", filepath.Join(e.dir, "etc"), "agent", "--cri-socket=", "--listen", "unix://" + e.sock}, flags...)
	e.startArgs(t, args, func(ctx context.Context) error { _, err := e.c.Health(ctx); return err })
}

func (e *agentEnv) startArgs(t *testing.T, args []string, ready func(context.Context) error) {
	t.Helper()
	e.cmd = exec.Command(testenv.Binary(t), args...)
	e.cmd.Stdout, e.cmd.Stderr = e.log, e.log
	if len(e.env) > 0 {
		e.cmd.Env = append(os.Environ(), e.env...)
	}
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(e.cmd, e.exited)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := ready(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-e.exited:
			b, _ := os.ReadFile(e.log.Name())
			t.Fatalf("the agent exited: %v\n%s", e.cmd.ProcessState, b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent does not answer: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill SIGKILLs the agent (by its PID) and waits for it.
func (e *agentEnv) kill(t *testing.T) {
	t.Helper()
	if e.cmd == nil {
		return
	}
	e.cmd.Process.Kill()
	<-e.exited
	e.cmd = nil
}

// stopAll force-stops the pods of the data directory that still run.
func (e *agentEnv) stopAll(t *testing.T) {
	t.Helper()
	var pods []stage0.PodInfo
	json.Unmarshal([]byte(karman(t, e.dir, "list", "--format", "json").Stdout), &pods)
	var uuids []string
	for _, p := range pods {
		if p.State == stage0.Running {
			uuids = append(uuids, p.UUID)
		}
	}
	if len(uuids) == 0 {
		return
	}
	karman(t, e.dir, append([]string{"stop", "--force"}, uuids...)...)
	for _, u := range uuids {
		karman(t, e.dir, "status", "--wait=30s", u)
	}
}

// spec is a task of the test image running sh -c script.
func (e *agentEnv) spec(script string) agentapi.TaskSpec {
	return agentapi.TaskSpec{Image: e.image, Command: []string{"/bin/sh", "-c", script}}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls f until it returns nil or d passed.
func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// events reads the recorded events after since.
func (e *agentEnv) events(t *testing.T, since uint64) []agentapi.Event {
	t.Helper()
	var evs []agentapi.Event
	if err := e.c.Events(ctxT(t, 30*time.Second), since, false, func(ev agentapi.Event) bool { evs = append(evs, ev); return true }); err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestAgentNodeReport(t *testing.T) {
	e := newAgentEnv(t)
	e.start(t, "--reserve-cpu", "500m", "--reserve-memory", "1G", "--label", "zone=test-a")
	ctx := ctxT(t, time.Minute)
	if fi, err := os.Stat(e.sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket %s: %v, mode %v; want owner-only", e.sock, err, fi.Mode())
	}
	n, err := e.c.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	release, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	var memTotal int64
	mi, _ := os.ReadFile("/proc/meminfo")
	fmt.Sscanf(strings.SplitN(string(mi), "\n", 2)[0], "MemTotal: %d kB", &memTotal)
	cpus := 0
	ci, _ := os.ReadFile("/proc/cpuinfo")
	for l := range strings.Lines(string(ci)) {
		if strings.HasPrefix(l, "processor") {
			cpus++
		}
	}
	id := n.Identity
	if id.Hostname != host || id.BootID != strings.TrimSpace(string(boot)) || id.Kernel != strings.TrimSpace(string(release)) || id.Arch == "" || id.OS == "" || id.ID == "" {
		t.Errorf("identity %+v does not match the machine (host %s, boot %s, kernel %s)", id, host, boot, release)
	}
	if n.Capacity.CPUCores != cpus || n.Capacity.CPUMillis != int64(cpus)*1000 || n.Capacity.MemoryBytes != memTotal<<10 || n.Capacity.DiskBytes <= 0 {
		t.Errorf("capacity %+v, want %d cores and %d bytes of memory", n.Capacity, cpus, memTotal<<10)
	}
	if n.Reserved.CPUMillis != 500 || n.Reserved.MemoryBytes != 1<<30 ||
		n.Allocatable.CPUMillis != n.Capacity.CPUMillis-500 || n.Allocatable.MemoryBytes != n.Capacity.MemoryBytes-1<<30 {
		t.Errorf("reserved %+v, allocatable %+v from capacity %+v", n.Reserved, n.Allocatable, n.Capacity)
	}
	if n.Labels["zone"] != "test-a" {
		t.Errorf("labels %v", n.Labels)
	}
	var types []string
	for _, c := range n.Conditions {
		types = append(types, c.Type)
		if c.Reason == "" {
			t.Errorf("condition %s has no reason", c.Type)
		}
	}
	if strings.Join(types, ",") != "Ready,MemoryPressure,DiskPressure,PIDPressure" {
		t.Errorf("conditions %v", types)
	}
	if n.Usage.HostMemoryAvailable <= 0 || n.Usage.HostMemoryAvailable > n.Capacity.MemoryBytes {
		t.Errorf("usage %+v", n.Usage)
	}

	// A task's request is allocated while it runs, and its usage shows.
	spec := e.spec("sleep 1000")
	spec.Resources = agentapi.TaskResources{CPUMillis: 250, MemoryBytes: 64 << 20}
	if _, err := e.c.Launch(ctx, "sized", spec); err != nil {
		t.Fatal(err)
	}
	if n, _ = e.c.Node(ctx); n.Allocated.CPUMillis != 250 || n.Allocated.MemoryBytes != 64<<20 || n.Tasks[agentapi.TaskRunning] != 1 {
		t.Errorf("allocated %+v, tasks %v; want the running task's request", n.Allocated, n.Tasks)
	}
	eventually(t, 10*time.Second, func() error {
		n, _ = e.c.Node(ctx)
		if n.Usage.TasksMemoryBytes <= 0 || n.Usage.TasksPids <= 0 {
			return fmt.Errorf("tasks' usage %+v", n.Usage)
		}
		return nil
	})
	if err := e.c.Delete(ctx, "sized"); err != nil {
		t.Fatal(err)
	}
	if n, _ = e.c.Node(ctx); n.Allocated.CPUMillis != 0 || n.Allocated.MemoryBytes != 0 {
		t.Errorf("allocated after delete: %+v", n.Allocated)
	}

	// The API document is served and is the one in docs/.
	resp, err := e.c.Do(ctx, http.MethodGet, "/v1/openapi.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var served, doc map[string]any
	json.NewDecoder(resp.Body).Decode(&served)
	b, err := os.ReadFile("../docs/agent-openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(b, &doc)
	if served["openapi"] == nil || fmt.Sprint(served) != fmt.Sprint(doc) {
		t.Errorf("the served OpenAPI document differs from docs/agent-openapi.json")
	}
	// Metrics in the Prometheus text format.
	resp, err = e.c.Do(ctx, http.MethodGet, "/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 1<<16)
	for {
		k, err := resp.Body.Read(buf)
		sb.Write(buf[:k])
		if err != nil {
			break
		}
	}
	for _, want := range []string{`karman_agent_tasks{state="running"} 0`, "karman_agent_launches_total 1", `karman_agent_api_request_duration_seconds_count{route="GET /v1/node"}`, "karman_node_allocatable_cpu_millis"} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, sb.String())
		}
	}
}

func TestAgentTaskLifecycle(t *testing.T) {
	e := newAgentEnv(t)
	// The task's image comes from a registry, fetched by the agent.
	e.image = pushBusybox(t, "agent/busybox:1")
	e.start(t)
	ctx := ctxT(t, 2*time.Minute)

	tk, err := e.c.Launch(ctx, "web", e.spec(`trap 'echo got-usr1' USR1; echo started; while :; do sleep 0.1; done`))
	if err != nil {
		t.Fatal(err)
	}
	if tk.State != agentapi.TaskRunning || tk.PodUUID == "" || tk.Started.IsZero() {
		t.Fatalf("launched task %+v, want running", tk)
	}
	// The pod is an ordinary pod, labelled with the task.
	pi := e.status(t, tk.PodUUID)
	if pi.State != stage0.Running || pi.Labels["karman.agent/task"] != "web" {
		t.Errorf("pod %+v", pi)
	}
	ts, err := e.c.Tasks(ctx)
	if err != nil || len(ts) != 1 || ts[0].ID != "web" {
		t.Errorf("tasks %+v, %v", ts, err)
	}
	logs := func() string {
		var sb strings.Builder
		if err := e.c.Logs(ctx, "web", false, &sb); err != nil {
			t.Fatal(err)
		}
		return sb.String()
	}
	eventually(t, 10*time.Second, func() error {
		if !strings.Contains(logs(), "started") {
			return fmt.Errorf("logs %q", logs())
		}
		return nil
	})
	if err := e.c.Signal(ctx, "web", "USR1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if !strings.Contains(logs(), "got-usr1") {
			return fmt.Errorf("no got-usr1 in the logs after SIGUSR1: %q", logs())
		}
		return nil
	})
	if err := e.c.Signal(ctx, "web", "NOSUCHSIG"); agentapi.StatusOf(err) != http.StatusBadRequest {
		t.Errorf("a bad signal: %v, want 400", err)
	}
	st, err := e.c.Stats(ctx, "web")
	if err != nil || st.MemoryBytes == 0 || st.Pids == 0 {
		t.Errorf("stats %+v, %v", st, err)
	}
	// Stop: TERM is trapped? No: the script traps only USR1, so TERM ends it.
	tk, err = e.c.Stop(ctx, "web", "5s")
	if err != nil || tk.State != agentapi.TaskExited || tk.Finished.IsZero() {
		t.Fatalf("stopped task %+v, %v", tk, err)
	}
	if _, err := e.c.Stop(ctx, "web", ""); err != nil {
		t.Errorf("stopping a stopped task again: %v", err)
	}

	// Wait returns the exit code; followed logs end with the task.
	if _, err := e.c.Launch(ctx, "batch", e.spec("for i in 1 2 3; do echo line-$i; sleep 0.2; done; exit 7")); err != nil {
		t.Fatal(err)
	}
	var follow strings.Builder
	if err := e.c.Logs(ctx, "batch", true, &follow); err != nil {
		t.Fatal(err)
	}
	if follow.String() != "line-1\nline-2\nline-3\n" {
		t.Errorf("followed logs %q", follow.String())
	}
	tk, err = e.c.Wait(ctx, "batch")
	if err != nil || tk.State != agentapi.TaskExited || tk.ExitCode == nil || *tk.ExitCode != 7 {
		t.Fatalf("waited task %+v, %v; want exited 7", tk, err)
	}

	// Delete removes the task and its pod, and is idempotent.
	for _, id := range []string{"web", "batch", "batch", "never-existed"} {
		if err := e.c.Delete(ctx, id); err != nil {
			t.Errorf("delete %s: %v", id, err)
		}
	}
	if _, err := e.c.Task(ctx, "web"); agentapi.StatusOf(err) != http.StatusNotFound {
		t.Errorf("a deleted task: %v, want 404", err)
	}
	var pods []stage0.PodInfo
	json.Unmarshal([]byte(karman(t, e.dir, "list", "--format", "json").Stdout), &pods)
	if len(pods) != 0 {
		t.Errorf("pods left after delete: %+v", pods)
	}
	// A running task is killed by delete.
	if _, err := e.c.Launch(ctx, "doomed", e.spec("sleep 1000")); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Delete(ctx, "doomed"); err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, ev := range e.events(t, 0) {
		if ev.Task == "batch" {
			types = append(types, ev.Type)
			if ev.Type == agentapi.EventTaskExited && (ev.ExitCode == nil || *ev.ExitCode != 7) {
				t.Errorf("exit event %+v, want code 7", ev)
			}
		}
	}
	if strings.Join(types, ",") != "task-starting,task-running,task-exited,task-deleted" {
		t.Errorf("events of task batch: %v", types)
	}
}

// pushBusybox pushes the test image to a loopback registry and returns
// its reference.
func pushBusybox(t *testing.T, repo string) string {
	t.Helper()
	ref := testregistry.Distribution(t) + "/" + repo
	pushed(t, ref, testimage.Options{}, testimage.Busybox)
	return ref
}

func TestAgentIdempotentLaunch(t *testing.T) {
	e := newAgentEnv(t)
	e.start(t)
	ctx := ctxT(t, 2*time.Minute)
	spec := e.spec("sleep 1000")
	var mu sync.Mutex
	uuids := map[string]int{}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i >= 20 {
				time.Sleep(time.Duration(i) * 10 * time.Millisecond) // some after it runs
			}
			tk, err := e.c.Launch(ctx, "once", spec)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("launch %d: %v", i, err)
				return
			}
			uuids[tk.PodUUID]++
		}()
	}
	wg.Wait()
	if len(uuids) != 1 {
		t.Errorf("40 launches of one task gave pods %v, want one", uuids)
	}
	var pods []stage0.PodInfo
	json.Unmarshal([]byte(karman(t, e.dir, "list", "--format", "json").Stdout), &pods)
	if len(pods) != 1 {
		t.Errorf("%d pods after 40 launches of one task, want 1", len(pods))
	}
	starts := 0
	for _, ev := range e.events(t, 0) {
		if ev.Type == agentapi.EventTaskStarting {
			starts++
		}
	}
	if starts != 1 {
		t.Errorf("%d task-starting events, want 1", starts)
	}
	other := e.spec("sleep 999")
	if _, err := e.c.Launch(ctx, "once", other); agentapi.StatusOf(err) != http.StatusConflict {
		t.Errorf("the same id with another spec: %v, want 409", err)
	}
}

func TestAgentAdmission(t *testing.T) {
	e := newAgentEnv(t)
	allowed := t.TempDir()
	e.start(t, "--volume-dir", allowed)
	ctx := ctxT(t, 2*time.Minute)
	// Every problem of an invalid spec is listed.
	bad := agentapi.TaskSpec{
		Env: map[string]string{"A=B": "x"}, Restart: "sometimes", StopTimeout: "soon",
		Resources: agentapi.TaskResources{CPUMillis: -1},
		Ports:     []agentapi.Port{{HostPort: 8080, ContainerPort: 80}},
		Volumes:   []agentapi.Volume{{Source: "/etc", Target: "/mnt"}},
		Labels:    map[string]string{"karman.agent/task": "spoof"},
		Networks:  []string{"host", "other"},
	}
	_, err := e.c.Launch(ctx, "-bad id", bad)
	var ae *agentapi.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		t.Fatalf("invalid spec: %v, want 400", err)
	}
	all := strings.Join(ae.Body.Problems, "\n")
	for _, want := range []string{"task id", "image", "env", "restart", "stopTimeout", "negative", "volume /etc", "karman.", "cannot be combined"} {
		if !strings.Contains(all, want) {
			t.Errorf("problems do not mention %q:\n%s", want, all)
		}
	}
	// A volume under the allowed directory is accepted.
	os.WriteFile(filepath.Join(allowed, "f"), []byte("vol-ok"), 0o644)
	vs := e.spec("cat /mnt/f")
	vs.Volumes = []agentapi.Volume{{Source: allowed, Target: "/mnt", ReadOnly: true}}
	if _, err := e.c.Launch(ctx, "vol", vs); err != nil {
		t.Fatal(err)
	}
	if tk, err := e.c.Wait(ctx, "vol"); err != nil || *tk.ExitCode != 0 {
		t.Errorf("volume task %+v, %v", tk, err)
	}

	n, err := e.c.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Resources beyond the allocatable: 409 with the reason.
	big := e.spec("sleep 1000")
	big.Resources.CPUMillis = n.Allocatable.CPUMillis + 1
	if _, err := e.c.Launch(ctx, "too-much-cpu", big); agentapi.StatusOf(err) != http.StatusConflict || !strings.Contains(err.Error(), "cpu") {
		t.Errorf("too much CPU: %v, want 409 naming cpu", err)
	}
	big = e.spec("sleep 1000")
	big.Resources.MemoryBytes = n.Allocatable.MemoryBytes/2&^4095 + 4096 // just over half, in pages
	if _, err := e.c.Launch(ctx, "half-memory", big); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Launch(ctx, "other-half", big); agentapi.StatusOf(err) != http.StatusConflict || !strings.Contains(err.Error(), "memory") {
		t.Errorf("memory beyond what is left: %v, want 409 naming memory", err)
	}
	// Host ports: taken by a task, or by something on the host.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	busy := lis.Addr().(*net.TCPAddr).Port
	hostTask := func(port int) agentapi.TaskSpec {
		s := e.spec("sleep 1000")
		s.Networks = []string{"host"}
		s.Ports = []agentapi.Port{{HostPort: port, ContainerPort: port}}
		return s
	}
	if _, err := e.c.Launch(ctx, "port-busy", hostTask(int(busy))); agentapi.StatusOf(err) != http.StatusConflict || !strings.Contains(err.Error(), "in use on the host") {
		t.Errorf("a port bound on the host: %v, want 409", err)
	}
	free := freeTCPPort(t)
	if _, err := e.c.Launch(ctx, "port-a", hostTask(free)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Launch(ctx, "port-b", hostTask(free)); agentapi.StatusOf(err) != http.StatusConflict || !strings.Contains(err.Error(), "taken by task port-a") {
		t.Errorf("a port of another task: %v, want 409", err)
	}
	// Bodies are size-limited.
	huge := e.spec(strings.Repeat("x", 2<<20))
	if _, err := e.c.Launch(ctx, "huge", huge); agentapi.StatusOf(err) != http.StatusRequestEntityTooLarge {
		t.Errorf("a 2 MiB body: %v, want 413", err)
	}
	// Refused launches leave no task and no pod behind.
	ts, _ := e.c.Tasks(ctx)
	var ids []string
	for _, tk := range ts {
		ids = append(ids, tk.ID)
	}
	if strings.Join(ids, ",") != "vol,half-memory,port-a" {
		t.Errorf("tasks %v, want only the admitted ones", ids)
	}
}

func TestAgentSignaturePolicy(t *testing.T) {
	e := newAgentEnv(t)
	// A fresh data directory whose configuration has no policy: reject.
	dir := t.TempDir()
	e.dir = dir
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	args := []string{"--dir", dir, "--config-dir", filepath.Join(dir, "etc"), "agent", "--cri-socket=", "--listen", "unix://" + e.sock}
	e.startArgs(t, args, func(ctx context.Context) error { _, err := e.c.Health(ctx); return err })
	_, err := e.c.Launch(ctxT(t, time.Minute), "unsigned", e.spec("true"))
	if agentapi.StatusOf(err) != http.StatusUnprocessableEntity || !strings.Contains(err.Error(), "polic") {
		t.Errorf("an image the policy rejects: %v, want 422 naming the policy", err)
	}
	if _, err := e.c.Task(ctxT(t, time.Minute), "unsigned"); agentapi.StatusOf(err) != http.StatusNotFound {
		t.Errorf("a refused launch is kept: %v", err)
	}
}

func TestAgentRecovery(t *testing.T) {
	e := newAgentEnv(t)
	e.start(t)
	ctx := ctxT(t, 5*time.Minute)
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.c.Launch(ctx, fmt.Sprintf("long-%02d", i), e.spec("sleep 1000")); err != nil {
				t.Errorf("launch %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// One task ends while the agent is down; one is from "before a reboot".
	if _, err := e.c.Launch(ctx, "short", e.spec("sleep 2; exit 9")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Launch(ctx, "rebooted", e.spec("sleep 1000")); err != nil {
		t.Fatal(err)
	}
	before := e.events(t, 0)
	last := before[len(before)-1].Seq
	before1, _ := e.c.Task(ctx, "long-00")

	e.kill(t)
	// Pretend the "rebooted" task started in another boot.
	rec := filepath.Join(e.dir, "agent", "tasks", "rebooted.json")
	b, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	m["bootId"] = "00000000-0000-0000-0000-000000000000"
	b, _ = json.Marshal(m)
	os.WriteFile(rec, b, 0o600)
	eventually(t, 30*time.Second, func() error {
		var pods []stage0.PodInfo
		json.Unmarshal([]byte(karman(t, e.dir, "list", "--format", "json").Stdout), &pods)
		for _, p := range pods {
			if p.Labels["karman.agent/task"] == "short" && p.State != stage0.Exited {
				return fmt.Errorf("task short's pod is %s", p.State)
			}
		}
		return nil
	})
	e.start(t)

	ts, err := e.c.Tasks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]agentapi.Task{}
	for _, tk := range ts {
		states[tk.ID] = tk
	}
	for i := range n {
		id := fmt.Sprintf("long-%02d", i)
		if tk := states[id]; tk.State != agentapi.TaskRunning {
			t.Errorf("task %s is %q after the restart, want running", id, tk.State)
		} else if e.status(t, tk.PodUUID).State != stage0.Running {
			t.Errorf("task %s's pod does not run", id)
		}
	}
	if after, _ := e.c.Task(ctx, "long-00"); after.PodUUID != before1.PodUUID || !after.Started.Equal(before1.Started) {
		t.Errorf("task long-00 changed: %+v, was %+v", after, before1)
	}
	if tk := states["short"]; tk.State != agentapi.TaskExited || tk.ExitCode == nil || *tk.ExitCode != 9 {
		t.Errorf("the task that ended while the agent was down: %+v, want exited 9", tk)
	}
	if tk := states["rebooted"]; tk.State != agentapi.TaskLost || !strings.Contains(tk.Reason, "reboot") {
		t.Errorf("the task from another boot: %+v, want lost", tk)
	}

	// The events resume after the last sequence number, with nothing lost.
	after := e.events(t, last)
	if len(after) == 0 || after[0].Seq != last+1 {
		t.Fatalf("events after %d: %+v", last, after)
	}
	var exited, lost, started bool
	for i, ev := range after {
		if ev.Seq != last+1+uint64(i) {
			t.Errorf("event %d has sequence %d, want %d", i, ev.Seq, last+1+uint64(i))
		}
		exited = exited || ev.Type == agentapi.EventTaskExited && ev.Task == "short" && ev.ExitCode != nil && *ev.ExitCode == 9
		lost = lost || ev.Type == agentapi.EventTaskLost && ev.Task == "rebooted"
		started = started || ev.Type == agentapi.EventAgentStarted
	}
	if !exited || !lost || !started {
		t.Errorf("events after the restart lack the exit of short (%v), the loss of rebooted (%v) or agent-started (%v): %+v", exited, lost, started, after)
	}
	all := e.events(t, 0)
	for i, ev := range all {
		if ev.Seq != uint64(i)+1 {
			t.Fatalf("event %d has sequence %d: the log has a gap or a repeat", i, ev.Seq)
		}
	}
	// A follower gets new events as they happen.
	got := make(chan agentapi.Event, 1)
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go e.c.Events(fctx, all[len(all)-1].Seq, true, func(ev agentapi.Event) bool { got <- ev; return false })
	if err := e.c.Delete(ctx, "short"); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-got:
		if ev.Type != agentapi.EventTaskDeleted || ev.Task != "short" {
			t.Errorf("followed event %+v", ev)
		}
	case <-time.After(30 * time.Second):
		t.Error("no event reached the follower")
	}
}

func TestAgentRestartPolicyAndOOM(t *testing.T) {
	e := newAgentEnv(t)
	e.start(t)
	ctx := ctxT(t, 2*time.Minute)
	// on-failure: restarted in a new pod after each failure, with back-off.
	flaky := e.spec("echo run; exit 3")
	flaky.Restart = "on-failure"
	first, err := e.c.Launch(ctx, "flaky", flaky)
	if err != nil {
		t.Fatal(err)
	}
	var tk agentapi.Task
	eventually(t, time.Minute, func() error {
		tk, err = e.c.Task(ctx, "flaky")
		if err != nil || tk.Restarts < 2 {
			return fmt.Errorf("task %+v, %v; want two restarts", tk, err)
		}
		return nil
	})
	if tk.PodUUID == first.PodUUID {
		t.Errorf("restarted in the same pod %s", tk.PodUUID)
	}
	// Stopping ends the restarts; the pods of earlier runs are gone.
	if tk, err = e.c.Stop(ctx, "flaky", "1s"); err != nil || !tk.State.Terminal() {
		t.Fatalf("stop %+v, %v", tk, err)
	}
	restarts := tk.Restarts
	time.Sleep(3 * time.Second)
	if tk, _ = e.c.Task(ctx, "flaky"); tk.Restarts != restarts || !tk.State.Terminal() {
		t.Errorf("restarted after stop: %+v", tk)
	}
	var pods []stage0.PodInfo
	json.Unmarshal([]byte(karman(t, e.dir, "list", "--format", "json").Stdout), &pods)
	if len(pods) != 1 {
		t.Errorf("%d pods for one restarted task, want the last one only", len(pods))
	}

	// A task that outgrows its memory is reported oom-killed.
	// The hog waits a moment: an app that outgrows its limit within
	// milliseconds of its start can have the OOM killer pick the pod's
	// init instead, whose forking thread is still in the app's memory
	// cgroup then (a stage1 matter, reported).
	hog := e.spec(`sleep 0.5; exec dd if=/dev/zero of=/dev/null bs=100M count=1`)
	hog.Resources.MemoryBytes = 32 << 20
	if _, err := e.c.Launch(ctx, "hog", hog); err != nil {
		t.Fatal(err)
	}
	tk, err = e.c.Wait(ctx, "hog")
	if err != nil || tk.ExitCode == nil || *tk.ExitCode != 137 || tk.Reason != "oom-killed" {
		t.Errorf("memory hog %+v, %v; want exit 137, oom-killed; its pod: %+v", tk, err, e.status(t, tk.PodUUID))
	}
	found := false
	for _, ev := range e.events(t, 0) {
		found = found || ev.Task == "hog" && ev.Type == agentapi.EventTaskExited && ev.Reason == "oom-killed"
	}
	if !found {
		t.Error("no task-exited event with reason oom-killed")
	}
}

// TestAgentRegistersWithMaster: --master makes the agent PUT its node
// document to a master (here one on loopback made by the test) and keep
// sending heartbeats at the interval the master asks for.
func TestAgentRegistersWithMaster(t *testing.T) {
	e := newAgentEnv(t)
	got := make(chan agentapi.Registration, 16)
	var paths sync.Map
	master := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var reg agentapi.Registration
		if r.Method != http.MethodPut || json.NewDecoder(r.Body).Decode(&reg) != nil {
			http.Error(w, "bad registration", http.StatusBadRequest)
			return
		}
		paths.Store(r.URL.Path, true)
		json.NewEncoder(w).Encode(agentapi.RegistrationReply{HeartbeatSeconds: 1})
		select {
		case got <- reg:
		default:
		}
	}))
	defer master.Close()
	e.start(t, "--master", master.URL, "--label", "rack=r1")
	n, err := e.c.Node(ctxT(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // the registration and a heartbeat
		select {
		case reg := <-got:
			if reg.Node.Identity.ID != n.Identity.ID || reg.Node.Labels["rack"] != "r1" || reg.Node.Capacity.CPUMillis != n.Capacity.CPUMillis {
				t.Errorf("registration %d: %+v, want the node document %+v", i, reg.Node.Identity, n.Identity)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no registration %d within 30s", i)
		}
	}
	if _, ok := paths.Load("/v1/nodes/" + n.Identity.ID); !ok {
		t.Errorf("the agent did not PUT /v1/nodes/%s", n.Identity.ID)
	}
}
