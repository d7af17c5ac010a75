package tests

import (
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/karman-project/karman/agentapi"
	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/tests/testimage"
)

// stallingRegistry is go-containerregistry's in-memory registry on
// loopback whose blob downloads can be held: while it stalls, every GET
// of a blob is announced on stalled and waits until release (or until its
// client goes away).
type stallingRegistry struct {
	host    string
	stalled chan string
	mu      sync.Mutex
	hold    chan struct{} // nil: blobs flow
}

func newStallingRegistry(t *testing.T) *stallingRegistry {
	t.Helper()
	r := &stallingRegistry{stalled: make(chan string, 16)}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/") {
			r.mu.Lock()
			hold := r.hold
			r.mu.Unlock()
			if hold != nil {
				select {
				case r.stalled <- req.URL.Path:
				default:
				}
				select {
				case <-hold:
				case <-req.Context().Done():
					return
				}
			}
		}
		inner.ServeHTTP(w, req)
	}))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(func() { r.release(); srv.Close() })
	r.host = l.Addr().String()
	return r
}

func (r *stallingRegistry) stall() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hold == nil {
		r.hold = make(chan struct{})
	}
}

func (r *stallingRegistry) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hold != nil {
		close(r.hold)
		r.hold = nil
	}
}

// taskPods returns the pods labelled with task id.
func (e *agentEnv) taskPods(t *testing.T, id string) []stage0.PodInfo {
	t.Helper()
	var pods, out []stage0.PodInfo
	if err := json.Unmarshal([]byte(karman(t, e.dir, "list", "--format", "json").Stdout), &pods); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		if p.Labels["karman.agent/task"] == id {
			out = append(out, p)
		}
	}
	return out
}

// TestAgentRetriesAnInterruptedLaunch: the agent is SIGKILLed while a
// launch waits for its image (the registry holds the blobs). Restarted,
// it reports the task failed as interrupted and has removed the pod the
// launch had begun; the same PUT then launches the task (201), in one
// pod, which runs.
func TestAgentRetriesAnInterruptedLaunch(t *testing.T) {
	e := newAgentEnv(t)
	reg := newStallingRegistry(t)
	ref := reg.host + "/stall/busybox:1"
	// An image of its own (its config differs), so that the agent must
	// fetch at least its config blob.
	pushed(t, ref, testimage.Options{Env: []string{"KARMAN_TEST=interrupted-launch"}}, testimage.Busybox)
	reg.stall()
	e.start(t)
	ctx := ctxT(t, 3*time.Minute)
	spec := agentapi.TaskSpec{Image: ref, Command: []string{"/bin/sh", "-c", "echo up; sleep 1000"}}

	cut := make(chan error, 1)
	go func() { _, err := e.c.Launch(ctx, "cut", spec); cut <- err }()
	select {
	case <-reg.stalled:
	case err := <-cut:
		t.Fatalf("the launch ended before fetching a blob: %v", err)
	case <-ctx.Done():
		t.Fatal("the agent never asked the registry for a blob")
	}
	if tk, err := e.c.Task(ctx, "cut"); err != nil || tk.State != agentapi.TaskStarting {
		t.Fatalf("mid-launch the task is %+v, %v; want starting", tk, err)
	}
	if pods := e.taskPods(t, "cut"); len(pods) != 1 || pods[0].State != stage0.Preparing {
		t.Errorf("mid-launch the task's pods are %+v; want one being prepared", pods)
	}
	e.kill(t) // SIGKILL, by PID
	if err := <-cut; err == nil {
		t.Fatal("the cut-off launch returned no error")
	}
	reg.release()

	e.start(t)
	tk, err := e.c.Task(ctx, "cut")
	if err != nil || tk.State != agentapi.TaskFailed || !strings.Contains(tk.Reason, "interrupted") || !strings.Contains(tk.Reason, "PUT the same spec again") {
		t.Fatalf("after the restart the task is %+v, %v; want failed, interrupted", tk, err)
	}
	if pods := e.taskPods(t, "cut"); len(pods) != 0 {
		t.Errorf("the interrupted launch's pod is left: %+v", pods)
	}
	seen := e.events(t, 0)
	last := seen[len(seen)-1].Seq

	// The same PUT launches it, once, however many come at the same time.
	const puts = 8
	type put struct {
		code int
		tk   agentapi.Task
		err  error
	}
	results := make(chan put, puts)
	for range puts {
		go func() {
			resp, err := e.c.Do(ctx, http.MethodPut, "/v1/tasks/cut", spec)
			if err != nil {
				results <- put{err: err}
				return
			}
			defer resp.Body.Close()
			var tk agentapi.Task
			err = json.NewDecoder(resp.Body).Decode(&tk)
			results <- put{resp.StatusCode, tk, err}
		}()
	}
	created := 0
	for range puts {
		r := <-results
		if r.err != nil || r.tk.State != agentapi.TaskRunning || r.tk.PodUUID == "" || r.tk.Reason != "" {
			t.Fatalf("PUT again: %d %+v, %v; want the task running", r.code, r.tk, r.err)
		}
		if r.code == http.StatusCreated {
			created++
			tk = r.tk
		} else if r.code != http.StatusOK {
			t.Errorf("PUT again: %d, want 201 once and 200 for the others", r.code)
		}
	}
	if created != 1 {
		t.Fatalf("%d of %d concurrent PUTs launched the task, want 1", created, puts)
	}
	pods := e.taskPods(t, "cut")
	if len(pods) != 1 || pods[0].UUID != tk.PodUUID || pods[0].State != stage0.Running {
		t.Errorf("pods of the task %+v; want the one running pod %s", pods, tk.PodUUID)
	}
	// Idempotent again, and the events tell the story.
	if again, err := e.c.Launch(ctx, "cut", spec); err != nil || again.PodUUID != tk.PodUUID {
		t.Errorf("a repeated PUT: %+v, %v; want the running task", again, err)
	}
	var types []string
	for _, ev := range e.events(t, last) {
		if ev.Task == "cut" {
			types = append(types, ev.Type)
		}
	}
	if strings.Join(types, ",") != "task-starting,task-running" {
		t.Errorf("events of the relaunch: %v", types)
	}
	if err := e.c.Delete(ctx, "cut"); err != nil {
		t.Fatal(err)
	}
}
