package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/agentapi"
	"github.com/karman-project/karman/network"
	"github.com/karman-project/karman/stage0"
)

// launchTimeout bounds a launch, image fetch included.
const launchTimeout = 5 * time.Minute

// Launch starts task id with spec, idempotently: an existing task with the
// same spec is returned as it is (created false), one with a different
// spec is ErrConflict. A task whose launch an agent crash interrupted
// (recovered failed, Interrupted) is launched again, its unfinished pod
// removed first. It returns once the task runs, or has already ended. A
// task that fails to start is not kept (its event says why): the error
// wraps ErrLaunch, ErrInvalid or ErrConflict (admission).
func (a *Agent) Launch(ctx context.Context, id string, spec agentapi.TaskSpec) (_ agentapi.Task, created bool, err error) {
	var problems []string
	if !validID(id) {
		problems = append(problems, fmt.Sprintf("task id %q: use 1 to 128 of letters, digits, '.', '_' and '-', not starting with '.' or '-'", id))
	}
	problems = append(problems, a.validate(&spec)...)
	if len(problems) > 0 {
		return agentapi.Task{}, false, &invalidError{problems}
	}
	hash := specHash(spec)
	a.mu.Lock()
	if t, ok := a.tasks[id]; ok {
		a.mu.Unlock()
		if t.rec.SpecHash != hash {
			return agentapi.Task{}, false, fmt.Errorf("task %q exists with a different spec; delete it first (DELETE /v1/tasks/%s): %w", id, id, ErrConflict)
		}
		// Wait for a launch in progress to finish.
		t.op.Lock()
		defer t.op.Unlock()
		a.mu.Lock()
		again := a.tasks[id] == t && t.rec.Interrupted && t.rec.State == agentapi.TaskFailed
		a.mu.Unlock()
		if again {
			return a.relaunch(ctx, t)
		}
		tk, err := a.Task(id)
		return tk, false, err
	}
	if err := a.admit(id, spec); err != nil {
		a.mu.Unlock()
		a.met.admissionRefusals.Add(1)
		return agentapi.Task{}, false, err
	}
	t := &task{done: make(chan struct{}), rec: record{SpecHash: hash, Task: agentapi.Task{
		ID: id, Spec: spec, Created: time.Now().UTC(), BootID: a.bootID,
	}}}
	t.op.Lock()
	defer t.op.Unlock()
	a.tasks[id] = t
	a.reserve(id, spec)
	a.setState(t, agentapi.TaskStarting, nil)
	a.mu.Unlock()
	return a.launch(ctx, t)
}

// relaunch launches again a task whose launch was interrupted, with t.op
// held: the pod the interrupted launch left, if any, is removed, and the
// task is admitted and started like a new one (its id, spec and creation
// time stay).
func (a *Agent) relaunch(ctx context.Context, t *task) (agentapi.Task, bool, error) {
	a.mu.Lock()
	id, spec, old := t.rec.ID, t.rec.Spec, t.rec.PodUUID
	a.mu.Unlock()
	if old != "" {
		if err := a.rt.Remove(ctx, old); err != nil && !errors.Is(err, stage0.ErrNotFound) {
			return agentapi.Task{}, false, fmt.Errorf("task %s: removing pod %s of the interrupted launch: %w", id, old, err)
		}
	}
	a.mu.Lock()
	if err := a.admit(id, spec); err != nil {
		a.mu.Unlock()
		a.met.admissionRefusals.Add(1)
		return agentapi.Task{}, false, err
	}
	t.done, t.stopping = make(chan struct{}), false
	a.reserve(id, spec)
	a.setState(t, agentapi.TaskStarting, func(r *record) {
		r.PodUUID, r.ExitCode, r.Reason, r.Started, r.Finished = "", nil, "", time.Time{}, time.Time{}
		r.Interrupted, r.BootID = false, a.bootID
	})
	a.mu.Unlock()
	a.log.Info("launching again a task whose launch was interrupted", "task", id, "old pod", old)
	return a.launch(ctx, t)
}

// launch starts a task just recorded as starting, with t.op held. A task
// that fails to start is forgotten.
func (a *Agent) launch(ctx context.Context, t *task) (agentapi.Task, bool, error) {
	id := t.rec.ID
	a.met.launches.Add(1)
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), launchTimeout)
	defer cancel()
	if err := a.start(lctx, t); err != nil {
		a.met.launchFailures.Add(1)
		a.mu.Lock()
		a.setState(t, agentapi.TaskFailed, func(r *record) { r.Reason = err.Error() })
		delete(a.tasks, id)
		a.countMove(agentapi.TaskFailed, "")
		a.mu.Unlock()
		a.store.remove(id)
		if errors.Is(err, stage0.ErrInvalid) {
			return agentapi.Task{}, false, &invalidError{[]string{err.Error()}}
		}
		return agentapi.Task{}, false, fmt.Errorf("task %s: %w: %w", id, ErrLaunch, err)
	}
	tk, err := a.Task(id)
	return tk, true, err
}

// start runs the task's pod and waits until its app has started; the
// task is then running, or exited if it ended at once.
func (a *Agent) start(ctx context.Context, t *task) error {
	a.mu.Lock()
	id, spec := t.rec.ID, t.rec.Spec
	a.mu.Unlock()
	select {
	case a.starts <- struct{}{}:
		defer func() { <-a.starts }()
	case <-ctx.Done():
		return ctx.Err()
	}
	uuid, _, err := a.rt.Run(ctx, podSpec(id, spec, a.cfg.VolumeDirs), stage0.RunOptions{Detach: true, Exited: func(string) { a.poke() }})
	if err != nil {
		return err
	}
	a.mu.Lock()
	t.rec.PodUUID = uuid
	if err := a.store.save(&t.rec); err != nil {
		a.log.Error("saving a task record", "task", id, "err", err)
	}
	a.mu.Unlock()
	pi, err := a.rt.WaitStarted(ctx, uuid)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	started := pi.Started
	if started.IsZero() {
		started = time.Now()
	}
	a.setState(t, agentapi.TaskRunning, func(r *record) { r.Started = started.UTC() })
	if pi.State != stage0.Running {
		a.finish(t, pi)
		if a.shouldRestart(t) {
			go a.restart(context.WithoutCancel(ctx), t)
		}
	}
	return nil
}

// finish records that the task's pod has ended; a.mu is held.
func (a *Agent) finish(t *task, pi stage0.PodInfo) {
	code, reason := exitOf(pi)
	a.setState(t, agentapi.TaskExited, func(r *record) {
		r.ExitCode, r.Reason = code, reason
		if !pi.Finished.IsZero() {
			r.Finished = pi.Finished.UTC()
		}
	})
}

// admit checks that a task fits: CPU and memory within what is left of
// the allocatable, host ports free among the tasks and on the host. a.mu
// is held.
func (a *Agent) admit(id string, s agentapi.TaskSpec) error {
	alloc := allocatable(a.capacity, a.reserved)
	used := a.allocatedAll()
	var reasons []string
	if r := s.Resources.CPUMillis; r > 0 && used.CPUMillis+r > alloc.CPUMillis {
		reasons = append(reasons, fmt.Sprintf("cpu: asks %dm, %dm of %dm allocatable are free", r, alloc.CPUMillis-used.CPUMillis, alloc.CPUMillis))
	}
	if r := s.Resources.MemoryBytes; r > 0 && used.MemoryBytes+r > alloc.MemoryBytes {
		reasons = append(reasons, fmt.Sprintf("memory: asks %d MiB, %d MiB of %d MiB allocatable are free", r>>20, (alloc.MemoryBytes-used.MemoryBytes)>>20, alloc.MemoryBytes>>20))
	}
	for _, p := range s.Ports {
		k := portKey(p)
		if other, ok := a.ports[k]; ok {
			reasons = append(reasons, fmt.Sprintf("port %s: taken by task %s", k, other))
		} else if err := network.HostPortFree(portMapping(p)); err != nil {
			reasons = append(reasons, fmt.Sprintf("port %s: in use on the host (%v)", k, err))
		}
	}
	if len(reasons) > 0 {
		return fmt.Errorf("task %s does not fit on this node: %s: %w", id, strings.Join(reasons, "; "), ErrConflict)
	}
	return nil
}

// Signal sends a signal (a name such as HUP or SIGUSR1, or a number) to a
// running task.
func (a *Agent) Signal(ctx context.Context, id, name string) error {
	sig, err := parseSignal(name)
	if err != nil {
		return &invalidError{[]string{err.Error()}}
	}
	a.mu.Lock()
	t, ok := a.tasks[id]
	var uuid string
	var st agentapi.TaskState
	if ok {
		uuid, st = t.rec.PodUUID, t.rec.State
	}
	a.mu.Unlock()
	if !ok {
		return fmt.Errorf("task %q: %w", id, ErrNotFound)
	}
	if st != agentapi.TaskRunning {
		return fmt.Errorf("task %s is %s, not running: %w", id, st, ErrConflict)
	}
	if sig == syscall.SIGTERM || sig == syscall.SIGKILL || sig == syscall.SIGINT {
		a.markStopping(t)
	}
	if err := a.rt.Signal(ctx, uuid, sig); err != nil {
		if errors.Is(err, stage0.ErrInvalid) {
			return &invalidError{[]string{err.Error()}}
		}
		if errors.Is(err, stage0.ErrState) || errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("task %s: %w: %w", id, ErrConflict, err)
		}
		return err
	}
	return nil
}

func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("signal %q: not a signal name or number", s)
}

func (a *Agent) markStopping(t *task) {
	a.mu.Lock()
	t.stopping = true
	a.mu.Unlock()
}

// Stop stops a task: SIGTERM, and SIGKILL after grace (0: the task's stop
// timeout, 10s by default). It returns the task once it has ended; a task
// that has ended already is returned as it is.
func (a *Agent) Stop(ctx context.Context, id string, grace time.Duration) (agentapi.Task, error) {
	t, err := a.get(id)
	if err != nil {
		return agentapi.Task{}, err
	}
	t.op.Lock()
	defer t.op.Unlock()
	if err := a.stop(ctx, t, grace); err != nil {
		return agentapi.Task{}, err
	}
	return a.Task(id)
}

// stop is Stop with t.op held.
func (a *Agent) stop(ctx context.Context, t *task, grace time.Duration) error {
	a.mu.Lock()
	t.stopping = true
	uuid, st := t.rec.PodUUID, t.rec.State
	if grace <= 0 {
		grace, _ = time.ParseDuration(t.rec.Spec.StopTimeout)
	}
	a.mu.Unlock()
	if st.Terminal() {
		return nil
	}
	if grace <= 0 {
		grace = 10 * time.Second
	}
	if err := a.rt.Stop(ctx, uuid, false); err != nil && !a.ending(ctx, uuid, err) {
		return fmt.Errorf("task %s: %w", t.rec.ID, err)
	}
	a.poke()
	if a.waitDone(ctx, t, grace) {
		return nil
	}
	if err := a.rt.Stop(ctx, uuid, true); err != nil && !a.ending(ctx, uuid, err) {
		return fmt.Errorf("task %s: %w", t.rec.ID, err)
	}
	if !a.waitDone(ctx, t, 30*time.Second) {
		return fmt.Errorf("task %s did not end within 30s of SIGKILL", t.rec.ID)
	}
	return nil
}

// ending tells whether a failed stop request failed because the pod was
// ending anyway (its init hung up, or it is gone): then its supervisor
// lets go of the pod within moments.
func (a *Agent) ending(ctx context.Context, uuid string, err error) bool {
	if errors.Is(err, stage0.ErrState) || errors.Is(err, stage0.ErrNotFound) {
		return true
	}
	for range 100 {
		if s, serr := a.rt.State(ctx, uuid); serr != nil || s != stage0.Running {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// waitDone waits up to d for the task to end, checking its pod directly
// so that it does not depend on the poll interval.
func (a *Agent) waitDone(ctx context.Context, t *task, d time.Duration) bool {
	deadline := time.After(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-t.done:
			return true
		case <-ctx.Done():
			return false
		case <-deadline:
			return false
		case <-tick.C:
			a.check(ctx, t)
		}
	}
}

// Delete stops the task at once if it runs, removes its pod and forgets
// it. Deleting an unknown task is not an error.
func (a *Agent) Delete(ctx context.Context, id string) error {
	t, err := a.get(id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	t.op.Lock()
	defer t.op.Unlock()
	a.mu.Lock()
	uuid, st := t.rec.PodUUID, t.rec.State
	t.stopping = true
	a.mu.Unlock()
	if !st.Terminal() {
		if err := a.rt.Stop(ctx, uuid, true); err != nil && !a.ending(ctx, uuid, err) {
			return fmt.Errorf("task %s: %w", id, err)
		}
		if !a.waitDone(ctx, t, 30*time.Second) {
			return fmt.Errorf("task %s did not end within 30s of SIGKILL", id)
		}
	}
	if uuid != "" {
		// The pod goes first: a crash in between leaves a record whose
		// pod is gone, which recovery handles, never an orphan pod.
		if err := a.rt.Remove(ctx, uuid); err != nil && !errors.Is(err, stage0.ErrNotFound) {
			return fmt.Errorf("task %s: removing its pod: %w", id, err)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tasks[id] != t {
		return nil
	}
	if err := a.store.remove(id); err != nil {
		return err
	}
	delete(a.tasks, id)
	a.countMove(t.rec.State, "")
	a.events.add(agentapi.Event{Type: agentapi.EventTaskDeleted, Task: id, PodUUID: uuid})
	return nil
}

// Wait blocks until the task has ended (or ctx ends) and returns it.
func (a *Agent) Wait(ctx context.Context, id string) (agentapi.Task, error) {
	t, err := a.get(id)
	if err != nil {
		return agentapi.Task{}, err
	}
	for {
		a.mu.Lock()
		done := t.done // a restart replaces it
		a.mu.Unlock()
		select {
		case <-done:
			return a.Task(id)
		case <-ctx.Done():
			return agentapi.Task{}, ctx.Err()
		case <-time.After(a.cfg.PollInterval):
			a.check(ctx, t)
		}
	}
}

// Logs writes the task's output to w; with follow until it ends.
func (a *Agent) Logs(ctx context.Context, id string, follow bool, w io.Writer) error {
	tk, err := a.Task(id)
	if err != nil {
		return err
	}
	if tk.PodUUID == "" {
		return nil
	}
	return a.rt.Logs(ctx, tk.PodUUID, appName, follow, w)
}

// Stats reads the task's cgroup usage.
func (a *Agent) Stats(ctx context.Context, id string) (agentapi.TaskStats, error) {
	tk, err := a.Task(id)
	if err != nil {
		return agentapi.TaskStats{}, err
	}
	out := agentapi.TaskStats{ID: id}
	if tk.State != agentapi.TaskRunning {
		return out, nil
	}
	pi, err := a.rt.Status(ctx, tk.PodUUID)
	if err != nil {
		return out, err
	}
	st := pi.Resources[appName]
	out.CPUSeconds = float64(st.CPUUsageNs) / 1e9
	out.MemoryBytes, out.MemoryPeakBytes, out.Pids = st.MemoryCurrent, st.MemoryPeak, st.Pids
	out.ThrottledPeriods, out.OOMKills = st.ThrottledPeriods, st.OOMKills
	return out, nil
}
