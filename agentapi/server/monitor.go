package server

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/karman-project/karman/agentapi"
	"github.com/karman-project/karman/stage0"
)

// Run does the agent's background work until ctx ends: it notices task
// exits (at once for pods this process started, within PollInterval for
// adopted ones), restarts tasks per their policy, samples usage and
// conditions, and registers with the master if there is one.
func (a *Agent) Run(ctx context.Context) {
	if a.cfg.Master != "" {
		go a.heartbeat(ctx)
	}
	poll := time.NewTicker(a.cfg.PollInterval)
	defer poll.Stop()
	sample := time.NewTicker(a.cfg.SampleInterval)
	defer sample.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.nudge:
			a.checkAll(ctx)
		case <-poll.C:
			a.checkAll(ctx)
		case <-sample.C:
			a.sampleNow(ctx)
		}
	}
}

// poke makes Run check the tasks now.
func (a *Agent) poke() {
	select {
	case a.nudge <- struct{}{}:
	default:
	}
}

func (a *Agent) checkAll(ctx context.Context) {
	a.mu.Lock()
	var running []*task
	for _, t := range a.tasks {
		if t.rec.State == agentapi.TaskRunning {
			running = append(running, t)
		}
	}
	a.mu.Unlock()
	for _, t := range running {
		a.check(ctx, t)
	}
}

// check looks at a running task's pod and records its end.
func (a *Agent) check(ctx context.Context, t *task) {
	a.mu.Lock()
	uuid, st := t.rec.PodUUID, t.rec.State
	a.mu.Unlock()
	if st != agentapi.TaskRunning || uuid == "" {
		return
	}
	ps, err := a.rt.State(ctx, uuid)
	if err == nil && ps == stage0.Running {
		return
	}
	var pi stage0.PodInfo
	if err == nil {
		pi, err = a.rt.Status(ctx, uuid)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if t.rec.State != agentapi.TaskRunning || t.rec.PodUUID != uuid {
		return // someone else recorded it meanwhile
	}
	if errors.Is(err, stage0.ErrNotFound) {
		a.setState(t, agentapi.TaskLost, func(r *record) { r.Reason = "its pod " + uuid + " was removed behind the agent's back" })
		return
	}
	if err != nil {
		a.log.Warn("checking a task", "task", t.rec.ID, "err", err)
		return
	}
	a.finish(t, pi)
	if a.shouldRestart(t) {
		go a.restart(context.WithoutCancel(ctx), t)
	}
}

// shouldRestart applies the restart policy to an exited task; a.mu is held.
func (a *Agent) shouldRestart(t *task) bool {
	if t.stopping || t.rec.State != agentapi.TaskExited {
		return false
	}
	switch t.rec.Spec.Restart {
	case "always":
		return true
	case "on-failure":
		return t.rec.ExitCode == nil || *t.rec.ExitCode != 0
	}
	return false
}

// restart starts an exited task again in a new pod, after a back-off that
// grows with the restarts (up to a minute). The old pod is removed.
func (a *Agent) restart(ctx context.Context, t *task) {
	a.mu.Lock()
	delay := min(time.Duration(1<<min(t.rec.Restarts, 6))*time.Second, time.Minute)
	old := t.rec.PodUUID
	a.mu.Unlock()
	select {
	case <-ctx.Done():
		return
	case <-time.After(delay):
	}
	// Stop and delete may have come during the back-off (they do not wait
	// for it).
	t.op.Lock()
	defer t.op.Unlock()
	a.mu.Lock()
	if a.tasks[t.rec.ID] != t || t.stopping || t.rec.State != agentapi.TaskExited || t.rec.PodUUID != old {
		a.mu.Unlock()
		return
	}
	a.mu.Unlock()
	if err := a.rt.Remove(ctx, old); err != nil && !errors.Is(err, stage0.ErrNotFound) {
		a.log.Warn("removing the pod of a restarted task", "task", t.rec.ID, "pod", old, "err", err)
	}
	a.mu.Lock()
	if t.stopping {
		a.mu.Unlock()
		return
	}
	if err := a.admit(t.rec.ID, t.rec.Spec); err != nil {
		a.setState(t, agentapi.TaskFailed, func(r *record) { r.Reason = "restart refused: " + err.Error() })
		a.mu.Unlock()
		return
	}
	t.done = make(chan struct{})
	a.reserve(t.rec.ID, t.rec.Spec)
	a.setState(t, agentapi.TaskStarting, func(r *record) {
		r.Restarts++
		r.PodUUID, r.ExitCode, r.Reason, r.Started, r.Finished = "", nil, "", time.Time{}, time.Time{}
	})
	a.mu.Unlock()
	a.met.launches.Add(1)
	if err := a.start(ctx, t); err != nil {
		a.met.launchFailures.Add(1)
		a.mu.Lock()
		a.setState(t, agentapi.TaskFailed, func(r *record) { r.Reason = "restart: " + err.Error() })
		a.mu.Unlock()
	}
}

// sampleNow reads the live usage of the tasks' cgroups and of the host,
// and the conditions derived from it.
func (a *Agent) sampleNow(ctx context.Context) {
	a.mu.Lock()
	var uuids []string
	for _, t := range a.tasks {
		if t.rec.State == agentapi.TaskRunning {
			uuids = append(uuids, t.rec.PodUUID)
		}
	}
	a.mu.Unlock()
	if a.others != nil {
		uuids = append(uuids, a.others.Pods()...)
	}
	u := agentapi.Usage{Sampled: time.Now().UTC()}
	for _, id := range uuids {
		runtime.Gosched() // a long sweep must not hold up API requests
		pi, err := a.rt.Status(ctx, id)
		if err != nil {
			continue
		}
		for _, st := range pi.Resources {
			u.TasksCPUSeconds += float64(st.CPUUsageNs) / 1e9
			u.TasksMemoryBytes += int64(st.MemoryCurrent)
			u.TasksPids += int64(st.Pids)
		}
	}
	hs := sampleHost(a.cfg.StateDir)
	nets := a.rt.Networks()
	u.HostMemoryAvailable, u.HostDiskFree, u.HostLoad1, u.HostProcesses = hs.memAvailable, hs.diskFree, hs.load1, hs.procs
	a.nodeMu.Lock()
	first := len(a.conds) == 0
	prevReady := !first && a.conds[0].Status
	a.sample, a.networks = u, nets
	a.conds = conditions(hs, a.conds, u.Sampled)
	ready := a.conds[0]
	a.nodeMu.Unlock()
	if !first && prevReady != ready.Status {
		a.events.add(agentapi.Event{Type: agentapi.EventNodeUpdated, Reason: ready.Reason, Message: ready.Message})
	}
}

// recover rebuilds the tasks from their records and their pods: running
// pods are adopted, pods that ended while the agent was down are reported
// with their exit status, tasks from before a reboot are lost.
func (a *Agent) recover(ctx context.Context) error {
	recs, errs := a.store.load()
	for _, err := range errs {
		a.log.Warn("task records", "err", err)
	}
	pods, err := a.rt.List(ctx)
	if err != nil {
		return fmt.Errorf("agent recovery: listing pods: %w", err)
	}
	byTask := map[string]stage0.PodInfo{} // the newest pod of each task
	for _, p := range pods {
		if id := p.Labels[LabelTask]; id != "" {
			byTask[id] = p // List is oldest first
		}
	}
	var adopted, ended, lost int
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range recs {
		t := &task{rec: *r, done: make(chan struct{})}
		a.tasks[r.ID] = t
		a.countMove("", r.State)
		if r.State.Terminal() {
			close(t.done)
			continue
		}
		a.reserve(r.ID, r.Spec)
		pi, found := byTask[r.ID]
		if r.PodUUID != "" && (!found || pi.UUID != r.PodUUID) {
			found = false
			for _, p := range pods {
				if p.UUID == r.PodUUID {
					pi, found = p, true
				}
			}
		}
		switch {
		case r.BootID != a.bootID:
			lost++
			a.setState(t, agentapi.TaskLost, func(r *record) { r.Reason = "the node rebooted since the task started" })
		case r.State == agentapi.TaskStarting && (!found || pi.State == stage0.Embryo || pi.State == stage0.Garbage):
			// The launch was cut off before the pod ran: its embryo (if
			// any) is removed, and a PUT of the same spec launches the
			// task again (Launch).
			leftover := ""
			if found {
				if err := a.rt.Remove(ctx, pi.UUID); err != nil && !errors.Is(err, stage0.ErrNotFound) {
					a.log.Warn("removing the pod of an interrupted launch", "task", r.ID, "pod", pi.UUID, "err", err)
					leftover = pi.UUID // removed by the next launch or the delete
				}
			}
			a.setState(t, agentapi.TaskFailed, func(r *record) {
				r.Interrupted, r.PodUUID = true, leftover
				r.Reason = "interrupted: the agent stopped while launching the task; PUT the same spec again to launch it"
			})
		case !found:
			lost++
			a.setState(t, agentapi.TaskLost, func(r *record) { r.Reason = "its pod is gone" })
		case pi.State == stage0.Running:
			adopted++
			a.log.Debug("adopted a running task", "task", r.ID, "pod", pi.UUID)
			if r.State != agentapi.TaskRunning || r.PodUUID != pi.UUID {
				started := pi.Started
				if started.IsZero() {
					started = time.Now()
				}
				a.setState(t, agentapi.TaskRunning, func(r *record) { r.PodUUID, r.Started = pi.UUID, started.UTC() })
			}
		default:
			ended++
			t.rec.PodUUID = pi.UUID
			a.finish(t, pi)
			if a.shouldRestart(t) {
				go a.restart(context.WithoutCancel(ctx), t)
			}
		}
	}
	a.events.add(agentapi.Event{Type: agentapi.EventAgentStarted,
		Message: fmt.Sprintf("agent %s started: %d task(s) adopted, %d ended while it was down, %d lost", a.cfg.Version, adopted, ended, lost)})
	return nil
}
