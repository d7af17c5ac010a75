package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/karman-project/karman/agentapi"
	"github.com/karman-project/karman/internal/lockfile"
	"github.com/karman-project/karman/network"
	"github.com/karman-project/karman/stage0"
)

// Config configures an Agent.
type Config struct {
	// Runtime runs the tasks' pods.
	Runtime *stage0.Runtime
	// StateDir holds the agent's records and events (DIR/agent).
	StateDir string
	// DataDir, when set, is the runtime's data directory (--dir). One
	// agent at a time serves it and StateDir: each holds a lock file
	// (LockFile) in both while the agent lives.
	DataDir string
	Version string
	Logger  *slog.Logger
	// Reserved is kept for the system: tasks get the rest. A negative
	// MemoryBytes means the default (256 MiB, at most a tenth).
	Reserved agentapi.Resources
	// Labels are the node's labels, for placement.
	Labels map[string]string
	// VolumeDirs are the host directories tasks may mount (and below).
	VolumeDirs []string
	// Ports is the dynamic port range reported to masters (default
	// 20000-32000).
	Ports agentapi.PortRange
	// Master, when set, is the URL of a master to register with; Endpoint
	// is the address sent to it.
	Master, Endpoint string
	// SampleInterval is how often usage and conditions are read (5s) and
	// PollInterval how often running tasks are checked (1s; exits of pods
	// this process started are seen at once).
	SampleInterval, PollInterval time.Duration
	// ParallelStarts bounds the pods being started at once (default
	// twice the CPUs, at least 4): more only thrash the CPUs, and the
	// API stays responsive during a launch storm.
	ParallelStarts int
}

// Accounting is what another user of the node reports to the agent.
type Accounting interface {
	// Allocated is the resources its workloads asked for.
	Allocated() agentapi.Resources
	// Pods are the UUIDs of its running pods.
	Pods() []string
}

// Error classes of the agent, mapped to HTTP statuses by the handlers.
var (
	ErrNotFound = errors.New("no such task")
	ErrConflict = errors.New("conflict")
	ErrInvalid  = errors.New("invalid request")
	ErrLaunch   = errors.New("launch failed")
	// ErrInUse: another agent serves the directory.
	ErrInUse = errors.New("in use by another agent")
)

// LockFile is the lock an agent holds in its state directory and in the
// data directory while it runs (flock(2), dropped by the kernel when the
// agent dies).
const LockFile = "agent.lock"

// invalidError carries every problem of an invalid request.
type invalidError struct{ problems []string }

func (e *invalidError) Error() string {
	return fmt.Sprintf("invalid task spec: %d problem(s): %v", len(e.problems), e.problems)
}
func (e *invalidError) Unwrap() error { return ErrInvalid }

// task is a task in memory. Its record is guarded by Agent.mu; op
// serializes the operations on one task (launch, stop, delete).
type task struct {
	op       sync.Mutex
	rec      record
	done     chan struct{} // closed when the task is terminal
	stopping bool          // stopped on request: no restart
}

// Agent is the node agent.
type Agent struct {
	cfg    Config
	rt     *stage0.Runtime
	log    *slog.Logger
	events *eventLog
	store  taskStore
	bootID string
	met    *metrics

	ident    agentapi.Identity
	capacity agentapi.Resources
	reserved agentapi.Resources

	// mu guards the tasks and their records, and is held while a record
	// is written; nodeMu (taken inside mu, never the other way) guards
	// what GET /v1/node reports, so that the node document never waits
	// for a disk write.
	mu        sync.Mutex
	tasks     map[string]*task
	ports     map[string]string // "tcp/80" -> task id
	nodeMu    sync.Mutex
	allocated agentapi.Resources // written under mu and nodeMu
	counts    map[agentapi.TaskState]int
	sample    agentapi.Usage
	networks  []string // the networks tasks may ask for, read with the usage
	conds     []agentapi.Condition

	others Accounting // ShareWith

	nudge  chan struct{}
	starts chan struct{} // a slot per pod start in progress
	locks  []*lockfile.Lock
}

// New opens the agent's state, fingerprints the node and recovers the
// tasks of earlier runs (see the package documentation).
func New(ctx context.Context, cfg Config) (*Agent, error) {
	if cfg.Runtime == nil || cfg.StateDir == "" {
		return nil, errors.New("agent: a runtime and a state directory are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Ports == (agentapi.PortRange{}) {
		cfg.Ports = agentapi.PortRange{From: defaultPortFrom, To: defaultPortTo}
	}
	if cfg.SampleInterval <= 0 {
		cfg.SampleInterval = 5 * time.Second
	}
	if cfg.ParallelStarts <= 0 {
		cfg.ParallelStarts = max(4, 2*runtime.NumCPU())
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	locks, err := lockDirs(cfg)
	if err != nil {
		return nil, err
	}
	id, err := nodeID(filepath.Join(cfg.StateDir, "node-id"))
	if err != nil {
		unlockAll(locks)
		return nil, err
	}
	a := &Agent{locks: locks,
		cfg: cfg, rt: cfg.Runtime, log: cfg.Logger, store: taskStore{filepath.Join(cfg.StateDir, "tasks")},
		bootID: readBootID(), tasks: map[string]*task{}, ports: map[string]string{}, counts: map[agentapi.TaskState]int{},
		nudge: make(chan struct{}, 1), met: newMetrics(), starts: make(chan struct{}, cfg.ParallelStarts),
	}
	a.ident, a.capacity, a.reserved = fingerprint(id, cfg.StateDir, cfg.Version, cfg.Reserved, cfg.Ports)
	if a.events, err = openEventLog(filepath.Join(cfg.StateDir, "events.log")); err != nil {
		unlockAll(locks)
		return nil, err
	}
	a.sampleNow(ctx)
	if err := a.recover(ctx); err != nil {
		a.events.close()
		unlockAll(locks)
		return nil, err
	}
	return a, nil
}

// lockDirs takes the agent's lock in the data directory, then creates the
// state directory and takes the lock there, without waiting: a directory
// another agent holds is refused, before anything is created.
func lockDirs(cfg Config) (_ []*lockfile.Lock, err error) {
	var locks []*lockfile.Lock
	defer func() {
		if err != nil {
			unlockAll(locks)
		}
	}()
	take := func(dir, what string) error {
		path := filepath.Join(dir, LockFile)
		l, err := lockfile.TryLock(path, true)
		if errors.Is(err, lockfile.ErrWouldBlock) {
			return fmt.Errorf("agent: %s %s is %w (it holds %s); stop that agent, or give this one another --dir or --state-dir", what, dir, ErrInUse, path)
		}
		if err != nil {
			return fmt.Errorf("agent: %s %s: %w", what, dir, err)
		}
		locks = append(locks, l)
		return nil
	}
	if cfg.DataDir != "" {
		if err := take(cfg.DataDir, "data directory (--dir)"); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, "tasks"), 0o700); err != nil {
		return nil, fmt.Errorf("agent state directory: %w", err)
	}
	if err := take(cfg.StateDir, "state directory"); err != nil {
		return nil, err
	}
	return locks, nil
}

func unlockAll(locks []*lockfile.Lock) {
	for _, l := range locks {
		l.Unlock()
	}
}

// Close releases the agent's files and locks. Tasks keep running.
func (a *Agent) Close() error {
	err := a.events.close()
	unlockAll(a.locks)
	return err
}

// Node returns the node document.
func (a *Agent) Node() agentapi.Node {
	a.nodeMu.Lock()
	defer a.nodeMu.Unlock()
	n := agentapi.Node{
		Identity: a.ident, Capacity: a.capacity, Reserved: a.reserved,
		Allocatable: allocatable(a.capacity, a.reserved), Allocated: a.allocatedAll(),
		Usage: a.sample, Conditions: a.conds, Labels: a.cfg.Labels, Networks: a.networks,
		Attributes: map[string]string{
			"cpu.numcores": fmt.Sprint(a.capacity.CPUCores), "cpu.frequency": fmt.Sprint(a.capacity.CPUMHz),
			"cpu.totalcompute":  fmt.Sprint(a.capacity.CPUCores * a.capacity.CPUMHz),
			"memory.totalbytes": fmt.Sprint(a.capacity.MemoryBytes), "kernel.name": "linux",
			"kernel.version": a.ident.Kernel, "os.name": a.ident.OS, "cpu.arch": a.ident.Arch,
			"os.cgroups.mode": a.ident.CgroupMode, "driver.karman": a.ident.RuntimeVersion,
		},
		Tasks: map[agentapi.TaskState]int{}, LastSequence: a.events.last(),
	}
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	for st, c := range a.counts {
		if c > 0 {
			n.Tasks[st] = c
		}
	}
	return n
}

// ShareWith makes o's workloads count in the node's accounting: what o
// has allocated counts in the node document and in admission, and its
// running pods' usage in the node's usage. The CRI server (package
// agentapi/cri) is one. Call it before Run and Serve.
func (a *Agent) ShareWith(o Accounting) { a.others = o }

// allocatedAll is what the tasks and the others (ShareWith) have
// allocated; nodeMu or mu is held.
func (a *Agent) allocatedAll() agentapi.Resources {
	r := a.allocated
	if a.others != nil {
		o := a.others.Allocated()
		r.CPUMillis += o.CPUMillis
		r.MemoryBytes += o.MemoryBytes
	}
	return r
}

// Tasks returns every task, by creation time.
func (a *Agent) Tasks() []agentapi.Task {
	a.mu.Lock()
	out := make([]agentapi.Task, 0, len(a.tasks))
	for _, t := range a.tasks {
		out = append(out, t.rec.Task)
	}
	a.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

// Task returns one task.
func (a *Agent) Task(id string) (agentapi.Task, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.tasks[id]
	if !ok {
		return agentapi.Task{}, fmt.Errorf("task %q: %w", id, ErrNotFound)
	}
	return t.rec.Task, nil
}

func (a *Agent) get(id string) (*task, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.tasks[id]
	if !ok {
		return nil, fmt.Errorf("task %q: %w", id, ErrNotFound)
	}
	return t, nil
}

// reserve accounts for a task's resources and ports; a.mu is held.
func (a *Agent) reserve(id string, s agentapi.TaskSpec) {
	a.nodeMu.Lock()
	a.allocated.CPUMillis += s.Resources.CPUMillis
	a.allocated.MemoryBytes += s.Resources.MemoryBytes
	a.nodeMu.Unlock()
	for _, p := range s.Ports {
		a.ports[portKey(p)] = id
	}
}

// release undoes reserve; a.mu is held.
func (a *Agent) release(id string, s agentapi.TaskSpec) {
	a.nodeMu.Lock()
	a.allocated.CPUMillis -= s.Resources.CPUMillis
	a.allocated.MemoryBytes -= s.Resources.MemoryBytes
	a.nodeMu.Unlock()
	for _, p := range s.Ports {
		if a.ports[portKey(p)] == id {
			delete(a.ports, portKey(p))
		}
	}
}

// countMove keeps the number of tasks by state: from "" is a new task,
// to "" a forgotten one. a.mu is held.
func (a *Agent) countMove(from, to agentapi.TaskState) {
	a.nodeMu.Lock()
	defer a.nodeMu.Unlock()
	if from != "" {
		a.counts[from]--
	}
	if to != "" {
		a.counts[to]++
	}
}

func portKey(p agentapi.Port) string {
	m := portMapping(p)
	return fmt.Sprintf("%s/%d", m.Protocol, m.HostPort)
}

// portMapping is the pod's port forward for a task's port (tcp unless
// the port says udp). The numbers are validated to fit before.
func portMapping(p agentapi.Port) network.PortMapping {
	proto := p.Protocol
	if proto == "" {
		proto = "tcp"
	}
	return network.PortMapping{HostPort: uint16(p.HostPort), PodPort: uint16(p.ContainerPort), Protocol: proto}
}

// setState moves a task to a terminal or running state, records it and
// emits the event; a.mu is held. The record and the event are on disk
// when it returns: under a.mu, so records land in state order and events
// in sequence (docs/agent.md, "Durability", says why this stays so).
func (a *Agent) setState(t *task, st agentapi.TaskState, mut func(r *record)) {
	was := t.rec.State
	if mut != nil {
		mut(&t.rec)
	}
	t.rec.State = st
	a.countMove(was, st)
	if st.Terminal() && !was.Terminal() {
		if t.rec.Finished.IsZero() {
			t.rec.Finished = time.Now().UTC()
		}
		a.release(t.rec.ID, t.rec.Spec)
		close(t.done)
	}
	if err := a.store.save(&t.rec); err != nil {
		a.log.Error("saving a task record", "task", t.rec.ID, "err", err)
	}
	ev := agentapi.Event{Task: t.rec.ID, PodUUID: t.rec.PodUUID, Reason: t.rec.Reason}
	switch st {
	case agentapi.TaskRunning:
		ev.Type = agentapi.EventTaskRunning
	case agentapi.TaskExited:
		ev.Type, ev.ExitCode = agentapi.EventTaskExited, t.rec.ExitCode
	case agentapi.TaskFailed:
		ev.Type = agentapi.EventTaskFailed
	case agentapi.TaskLost:
		ev.Type = agentapi.EventTaskLost
	default:
		ev.Type = agentapi.EventTaskStarting
	}
	a.events.add(ev)
}

// exitOf reads how a pod ended: its exit code and a reason.
func exitOf(pi stage0.PodInfo) (*int, string) {
	reason := ""
	for _, ap := range pi.Apps {
		switch {
		case ap.Reason != "":
			reason = ap.Reason
		case ap.Signal != "":
			reason = "killed by " + ap.Signal
		}
	}
	code := pi.ExitCode
	if code == nil {
		for _, ap := range pi.Apps {
			if ap.ExitCode != nil {
				code = ap.ExitCode
			}
		}
	}
	if code == nil && reason == "" {
		reason = "the pod ended without an exit status (its supervisor was killed)"
	}
	return code, reason
}
