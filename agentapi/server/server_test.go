package server

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/karman-project/karman/agentapi"
	"github.com/karman-project/karman/stage1/poddir"
	"github.com/karman-project/karman/tests/pagecache"
)

func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(agentapi.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	seen := map[string]bool{}
	for _, r := range (&Agent{}).routePaths() {
		method, path, _ := strings.Cut(r, " ")
		seen[method+" "+path] = true
		if _, ok := doc.Paths[path][method]; !ok {
			t.Errorf("route %s is not in openapi.json", r)
		}
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method != "parameters" && !seen[method+" "+path] {
				t.Errorf("openapi.json documents %s %s, which the agent does not serve", method, path)
			}
		}
	}
}

func TestEventLogSurvivesReopenAndTornLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.log")
	l, err := openEventLog(path)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		l.add(agentapi.Event{Type: agentapi.EventTaskRunning, Task: "a"})
	}
	l.close()
	// A crash in the middle of a write leaves a torn line.
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"seq":4,"type":"task-ru`)
	f.Close()
	l, err = openEventLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	if l.last() != 3 {
		t.Fatalf("last %d after reopening, want 3", l.last())
	}
	if ev := l.add(agentapi.Event{Type: agentapi.EventAgentStarted}); ev.Seq != 4 {
		t.Errorf("next sequence %d, want 4", ev.Seq)
	}
	evs, _ := l.since(2)
	if len(evs) != 2 || evs[0].Seq != 3 || evs[1].Seq != 4 {
		t.Errorf("since(2) = %+v", evs)
	}
	// A follower sees new events; since beyond the end waits.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	go func() {
		l.stream(ctx, 4, true, bufio.NewWriter(pw), func() {})
		pw.Close()
	}()
	l.add(agentapi.Event{Type: agentapi.EventTaskExited, Task: "b"})
	var ev agentapi.Event
	if err := json.NewDecoder(pr).Decode(&ev); err != nil || ev.Seq != 5 || ev.Task != "b" {
		t.Errorf("followed %+v, %v", ev, err)
	}
	cancel()
	io.Copy(io.Discard, pr)
}

func TestValidateListsEveryProblem(t *testing.T) {
	a := &Agent{cfg: Config{VolumeDirs: []string{"/srv/data"}}}
	spec := agentapi.TaskSpec{
		Command: []string{""}, Env: map[string]string{"": "x"}, Restart: "maybe", StopTimeout: "-1s",
		Resources: agentapi.TaskResources{MemoryBytes: 1000},
		Networks:  []string{"none"}, Ports: []agentapi.Port{{HostPort: 80, ContainerPort: 80}, {HostPort: 0, ContainerPort: 1, Protocol: "sctp"}},
		Volumes: []agentapi.Volume{{Source: "/srv/data/x", Target: "/x"}, {Source: "/srv/database", Target: "/y"}, {Source: "/srv/data/../etc", Target: "/z"},
			{Source: "/srv/data/p", Target: "/proc/sys"}, {Source: "/srv/data/r", Target: "/"}},
	}
	p := strings.Join(a.validate(&spec), "\n")
	for _, want := range []string{"image: required", "command", "env", "restart", "stopTimeout", "4 MiB", "network none", "sctp", "volume /srv/database", "volume /srv/data/../etc",
		"volume target /proc/sys: the runtime mounts", "volume target /: the runtime mounts"} {
		if !strings.Contains(p, want) {
			t.Errorf("problems do not mention %q:\n%s", want, p)
		}
	}
	if strings.Contains(p, "/srv/data/x") {
		t.Errorf("an allowed volume was refused:\n%s", p)
	}
	host := agentapi.TaskSpec{Image: "i", Networks: []string{"host"}, Ports: []agentapi.Port{{HostPort: 8080, ContainerPort: 80}}}
	if p := a.validate(&host); len(p) != 1 || !strings.Contains(p[0], "same number") {
		t.Errorf("host network with a mapped port: %v", p)
	}
	// The fields that say what the CLI's flags say go through the same
	// checks: a task cannot get what `karman run` refuses.
	same := agentapi.TaskSpec{
		Image: "i", User: "4294967295", Command: []string{"/bin/sh\x00", "-c"}, Args: []string{"x\x00y"},
		Env:         map[string]string{"A=B": "x", "OK": "nul\x00"},
		Resources:   agentapi.TaskResources{CPUMillis: 5, MemoryBytes: 5000000, Pids: -1},
		StopTimeout: "0s",
	}
	p = strings.Join(a.validate(&same), "\n")
	for _, want := range []string{"0 to 4294967294", "program", `"A=B"`, "NUL byte", "10 to 1000000 millicores", "multiple of the 4096-byte page", "1 to 4194304", "stopTimeout: 0s is not a positive duration", "argument 2"} {
		if !strings.Contains(p, want) {
			t.Errorf("problems do not mention %q:\n%s", want, p)
		}
	}
	for id, ok := range map[string]bool{"web-1": true, "a.b_c": true, "": false, "-x": false, ".x": false, "a/b": false, "a\nb": false, strings.Repeat("x", 129): false} {
		if validID(id) != ok {
			t.Errorf("validID(%q) = %v", id, !ok)
		}
	}
}

func TestPodSpecFromTask(t *testing.T) {
	ps := podSpec("t1", agentapi.TaskSpec{Image: "img", Command: []string{"/bin/sh", "-c"}, Args: []string{"echo hi"},
		Env: map[string]string{"B": "2", "A": "1"}, Labels: map[string]string{"team": "x"}, StopTimeout: "3s",
		Resources: agentapi.TaskResources{CPUMillis: 100, MemoryBytes: 64 << 20, Pids: 10},
		Volumes:   []agentapi.Volume{{Source: "/srv/vol/a/../b", Target: "/data", ReadOnly: true}}}, []string{"/other", "/srv/vol/"})
	app := ps.Apps[0]
	if want := (poddir.Mount{Source: "/srv/vol/b", Target: "/data", ReadOnly: true, SourceRoot: "/srv/vol"}); len(app.Mounts) != 1 || app.Mounts[0] != want {
		t.Errorf("mounts %+v, want %+v", app.Mounts, want)
	}
	if app.Exec != "/bin/sh" || strings.Join(app.Args, "|") != "-c|echo hi" || strings.Join(app.Env, ",") != "A=1,B=2" ||
		app.Resources.CPUMillis != 100 || app.Resources.PidsLimit != 10 || ps.Net != "none" || ps.StopTimeout != 3*time.Second ||
		ps.Labels[LabelTask] != "t1" || ps.Labels["team"] != "x" {
		t.Errorf("pod spec %+v", ps)
	}
}

// TestVolumeRoot: a volume is resolved beneath the outermost volume
// directory it is under, by path components, not by string prefix.
func TestVolumeRoot(t *testing.T) {
	dirs := []string{"/srv/vol/inner", "/srv/vol", "/data/"}
	for src, want := range map[string]string{
		"/srv/vol/inner/x": "/srv/vol", "/srv/vol": "/srv/vol", "/data/a/b": "/data",
		"/srv/volume": "", "/srv": "", "/data/../etc": "", "/": "",
	} {
		if got := volumeRoot(dirs, src); got != want {
			t.Errorf("volumeRoot(%q) = %q, want %q", src, got, want)
		}
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{"HUP": syscall.SIGHUP, "sigusr1": syscall.SIGUSR1, "SIGTERM": syscall.SIGTERM, "9": syscall.SIGKILL} {
		if got, err := parseSignal(in); err != nil || got != want {
			t.Errorf("parseSignal(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "NOPE", "0", "99"} {
		if _, err := parseSignal(in); err == nil {
			t.Errorf("parseSignal(%q) accepted", in)
		}
	}
}

func TestListenRefusesUnauthenticatedTCP(t *testing.T) {
	for _, o := range []ListenOptions{
		{Addr: "tcp://127.0.0.1:0"},
		{Addr: "tcp://127.0.0.1:0", CertFile: "c", KeyFile: "k"},
		{Addr: "tcp://127.0.0.1:0", TokenFile: "t"},
	} {
		if _, _, err := Listen(o); err == nil || !strings.Contains(err.Error(), "refusing to serve TCP") {
			t.Errorf("Listen(%+v) = %v, want a refusal", o, err)
		}
	}
}

// TestHeartbeat runs the registration loop against a master on loopback
// that fails twice, then accepts and asks for a 1 s heartbeat.
func TestHeartbeat(t *testing.T) {
	var mu sync.Mutex
	var calls []time.Time
	var got agentapi.Registration
	master := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, time.Now())
		if r.Method != http.MethodPut || r.URL.Path != "/v1/nodes/node-1" {
			t.Errorf("master got %s %s", r.Method, r.URL.Path)
		}
		if len(calls) <= 2 {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		json.NewDecoder(r.Body).Decode(&got)
		json.NewEncoder(w).Encode(agentapi.RegistrationReply{HeartbeatSeconds: 1})
	}))
	defer master.Close()
	dir := t.TempDir()
	ev, err := openEventLog(filepath.Join(dir, "events.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer ev.close()
	a := &Agent{cfg: Config{Master: master.URL, Endpoint: "tcp://127.0.0.1:1"}, events: ev, tasks: map[string]*task{},
		ident: agentapi.Identity{ID: "node-1", Hostname: "h"}, log: discardLogger()}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { a.heartbeat(ctx); close(done) }()
	for {
		mu.Lock()
		n := len(calls)
		mu.Unlock()
		if n >= 5 || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(calls) < 5 {
		t.Fatalf("%d calls to the master in 20s", len(calls))
	}
	// Back-off: 1 s then 2 s (plus jitter) after the failures; then the
	// master's 1 s interval.
	if d := calls[2].Sub(calls[1]); d < 2*time.Second {
		t.Errorf("second retry after %v, want the back-off to double to 2s", d)
	}
	if d := calls[4].Sub(calls[3]); d < 900*time.Millisecond || d > 3*time.Second {
		t.Errorf("heartbeat interval %v, want about the master's 1s", d)
	}
	if got.Node.Identity.ID != "node-1" || got.Endpoint != "tcp://127.0.0.1:1" {
		t.Errorf("registration %+v", got)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestRecordsAndEventsAreOnDisk: a saved task record and an appended
// event have reached the disk when the call returns (a power loss keeps
// them).
func TestRecordsAndEventsAreOnDisk(t *testing.T) {
	dir := t.TempDir()
	pagecache.RequireDiskBacked(t, dir)
	l, err := openEventLog(filepath.Join(dir, "events.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	for range 3 {
		l.add(agentapi.Event{Type: agentapi.EventTaskRunning, Task: "a"})
		pagecache.RequireSynced(t, filepath.Join(dir, "events.log"))
	}
	s := taskStore{dir: dir}
	r := &record{Task: agentapi.Task{ID: "a"}, SpecHash: "h"}
	if err := s.save(r); err != nil {
		t.Fatal(err)
	}
	pagecache.RequireSynced(t, s.path("a"))
	// A save cut off by a crash leaves a temporary file, which load removes.
	stale := filepath.Join(dir, ".b.json.tmp-123")
	if err := os.WriteFile(stale, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	recs, errs := s.load()
	if len(recs) != 1 || len(errs) != 0 {
		t.Fatalf("load: %d records, errors %v; want the one record", len(recs), errs)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("temporary file left by a crash is still there: %v", err)
	}
}
