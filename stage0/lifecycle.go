package stage0

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/karman-project/karman/image/rootfs"
	"github.com/karman-project/karman/internal/lockfile"
	"github.com/karman-project/karman/network"
	"github.com/karman-project/karman/stage1"
	"github.com/karman-project/karman/stage1/poddir"
)

// Wait blocks until the pod is no longer running (its lock is free) or ctx
// ends, and returns its status.
func (r *Runtime) Wait(ctx context.Context, uuid string) (PodInfo, error) {
	p, err := r.find(uuid)
	if err != nil {
		return PodInfo{}, err
	}
	if p.stateDir == "run" {
		l, err := lockfile.AcquireDir(ctx, p.path, false)
		if err != nil {
			return r.info(p), fmt.Errorf("pod %s is still running: %w", p.uuid, err)
		}
		l.Unlock()
	}
	if np, err := r.relocate(p); err == nil {
		p = np
	}
	return r.info(p), nil
}

// Stop stops a running pod: SIGTERM to its apps and SIGKILL after the
// pod's stop timeout, or SIGKILL at once with force.
func (r *Runtime) Stop(_ context.Context, uuid string, force bool) error {
	p, err := r.find(uuid)
	if err != nil {
		return err
	}
	if s := p.state(); s != Running {
		return fmt.Errorf("pod %s is %s, not running: %w", p.uuid, s, ErrState)
	}
	if err := stage1.Stop(p.path, force); errors.Is(err, stage1.ErrNotRunning) {
		return fmt.Errorf("pod %s ended meanwhile: %w", p.uuid, ErrState)
	} else if err != nil {
		return err
	}
	return nil
}

// Signal sends sig to the apps of a running pod. SIGTERM and SIGINT stop
// the pod gracefully and SIGKILL stops it at once (as Stop); other signals
// are forwarded to every app by the pod's supervisor.
func (r *Runtime) Signal(ctx context.Context, uuid string, sig syscall.Signal) error {
	switch sig {
	case syscall.SIGTERM, syscall.SIGINT:
		return r.Stop(ctx, uuid, false)
	case syscall.SIGKILL:
		return r.Stop(ctx, uuid, true)
	case syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH:
	default:
		return fmt.Errorf("signal %d: the supervisor forwards only HUP, INT, QUIT, TERM, KILL, USR1, USR2 and WINCH: %w", sig, ErrInvalid)
	}
	return r.signalSupervisor(uuid, sig, fmt.Sprintf("signal %d", sig))
}

// signalSupervisor sends sig to the supervisor of the running pod uuid;
// what says what the signal is for, in the error.
func (r *Runtime) signalSupervisor(uuid string, sig syscall.Signal, what string) error {
	p, err := r.find(uuid)
	if err != nil {
		return err
	}
	if s := p.state(); s != Running {
		return fmt.Errorf("pod %s is %s, not running: %w", p.uuid, s, ErrState)
	}
	b, err := os.ReadFile(filepath.Join(p.path, poddir.SupervisorPID))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("pod %s is starting and has no supervisor PID yet; try again: %w", p.uuid, ErrState)
	}
	// The lock was held a moment ago, so the PID is the supervisor's; a
	// supervisor that ended since leaves ESRCH.
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("pod %s: %s to its supervisor (pid %d): %w", p.uuid, what, pid, err)
	}
	return nil
}

// Remove deletes an exited or prepared pod at once. Racing with another
// rm or gc on the same pod, exactly one of them removes it; the others
// return ErrGone, as does a whole UUID that names no pod (already
// removed). A pod whose teardown fails in part stays, with what is left
// recorded in it (gc retries); ForceRemove removes it anyway.
func (r *Runtime) Remove(ctx context.Context, uuid string) error {
	return r.remove(ctx, uuid, false)
}

// ForceRemove is Remove for a damaged pod: what cannot be undone is
// reported, and the pod's directory goes all the same (never while a
// mount is left under it).
func (r *Runtime) ForceRemove(ctx context.Context, uuid string) error {
	return r.remove(ctx, uuid, true)
}

func (r *Runtime) remove(ctx context.Context, uuid string, force bool) error {
	p, err := r.find(uuid)
	if errors.Is(err, ErrNotFound) && isUUID(strings.TrimSpace(uuid)) {
		return fmt.Errorf("no pod %s: %w", uuid, ErrGone)
	}
	if err != nil {
		return err
	}
	gone := fmt.Errorf("pod %s was removed meanwhile by another karman process: %w", p.uuid, ErrGone)
	// Each turn either removes the pod or sees another process move or
	// sweep it; a few turns are plenty.
	for range 8 {
		switch s := p.state(); s {
		case Running:
			return fmt.Errorf("pod %s is running; stop it first with `karman stop %s`: %w", p.uuid, p.uuid, ErrState)
		case Preparing:
			return fmt.Errorf("pod %s is being prepared by another karman process; try again when it is done: %w", p.uuid, ErrState)
		case Exited:
			_, err = r.move(p, "exited-garbage")
		case Prepared, Embryo:
			_, err = r.move(p, "garbage")
		case Deleting:
			// Another rm or gc sweeps it: wait for it to finish.
			var l *lockfile.Lock
			if l, err = lockfile.AcquireDir(ctx, p.path, true); err == nil {
				l.Unlock()
			}
		default: // ExitedGarbage, Garbage
			err = r.sweep(ctx, p, force)
			if err == nil {
				return nil
			}
		}
		switch {
		case err == nil, errors.Is(err, ErrNotFound), errors.Is(err, lockfile.ErrWouldBlock):
		case errors.Is(err, fs.ErrNotExist):
			return gone
		default:
			return err
		}
		if p, err = r.relocate(p); err != nil {
			return gone
		}
	}
	return fmt.Errorf("pod %s keeps being moved by other karman processes; try again: %w", p.uuid, ErrState)
}

// GCResult says what gc did.
type GCResult struct {
	Marked  []string `json:"marked"`
	Removed []string `json:"removed"`
	// Pruned and Kept are what GCAll removed of the networks' shared
	// parts, and what it kept and why.
	Pruned []string `json:"pruned,omitempty"`
	Kept   []string `json:"kept,omitempty"`
}

// GC marks exited pods (and abandoned prepares) as garbage and removes
// the garbage older than grace. With markOnly it only marks. A pod that
// cannot be removed completely is reported and kept for the next gc; the
// others are collected all the same.
func (r *Runtime) GC(ctx context.Context, grace time.Duration, markOnly bool) (GCResult, error) {
	res := GCResult{Marked: []string{}, Removed: []string{}}
	var errs []error
	// A failed teardown at the mark is reported unless the sweep of the
	// same run retries it (and reports it itself).
	markErrs := map[string]error{}
	for _, sd := range []string{"run", "embryo"} {
		ents, err := os.ReadDir(filepath.Join(r.dir, "pods", sd))
		if err != nil {
			return res, err
		}
		for _, e := range ents {
			p := pod{uuid: e.Name(), stateDir: sd, path: r.podPath(sd, e.Name())}
			to := "exited-garbage"
			switch p.state() {
			case Exited:
			case Embryo:
				to = "garbage"
			default:
				continue
			}
			if np, err := r.move(p, to); err == nil {
				res.Marked = append(res.Marked, p.uuid)
				// An exited pod needs no network: free its address and
				// ports now rather than after the grace period, under
				// the pod's lock (an rm may be sweeping it already).
				if err := r.locked(np, func() error { return r.teardownNetwork(ctx, np) }); err != nil {
					markErrs[p.uuid] = fmt.Errorf("%w (`karman gc` retries)", err)
				}
			} else if !errors.Is(err, ErrNotFound) {
				errs = append(errs, err)
			}
		}
	}
	if markOnly {
		return res, r.joinGC(errs, markErrs)
	}
	for _, sd := range []string{"exited-garbage", "garbage"} {
		ents, err := os.ReadDir(filepath.Join(r.dir, "pods", sd))
		if err != nil {
			return res, err
		}
		for _, e := range ents {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			p := pod{uuid: e.Name(), stateDir: sd, path: r.podPath(sd, e.Name())}
			// The rename into a garbage directory set ctime: the grace
			// period runs from the mark.
			if fi, err := os.Stat(p.path); err != nil || time.Since(ctime(fi)) < grace {
				continue
			}
			delete(markErrs, p.uuid)
			if err := r.sweep(ctx, p, false); errors.Is(err, lockfile.ErrWouldBlock) || errors.Is(err, fs.ErrNotExist) {
				continue // another gc or rm has it
			} else if err != nil {
				errs = append(errs, err)
				continue
			}
			res.Removed = append(res.Removed, p.uuid)
		}
	}
	return res, r.joinGC(errs, markErrs)
}

// joinGC joins gc's errors: those of the sweeps, then the failed
// teardowns at the mark that no sweep retried, by pod.
func (r *Runtime) joinGC(errs []error, markErrs map[string]error) error {
	uuids := slices.Sorted(maps.Keys(markErrs))
	for _, u := range uuids {
		errs = append(errs, markErrs[u])
	}
	return errors.Join(errs...)
}

// GCAll is GC without a grace period, followed by the removal of what the
// pods of the default network share and gc keeps by design: the bridge,
// its nftables table and the network namespace directory's mount, each
// only while no pod (of any data directory) uses it (network.Prune).
func (r *Runtime) GCAll(ctx context.Context) (GCResult, error) {
	res, err := r.GC(ctx, 0, false)
	if err != nil {
		return res, err
	}
	res.Pruned, res.Kept, err = network.Prune(r.configDir)
	return res, err
}

// locked runs fn holding the pod's lock. A pod whose lock another process
// holds, or that is gone, is that process's: fn does not run.
func (r *Runtime) locked(p pod, fn func() error) error {
	l, err := lockfile.TryLockDir(p.path, true)
	if errors.Is(err, lockfile.ErrWouldBlock) || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer l.Unlock()
	if _, err := os.Lstat(p.path); err != nil {
		return nil // removed by whoever held the lock before us
	}
	return fn()
}

// sweep removes a pod in a garbage directory completely: its network, any
// mount left under it, its cgroups, its leases and its directory. It
// holds the pod's lock so two sweeps never run on one pod. Each part is
// undone even when another fails; the directory, which records what is
// left, goes only when everything succeeded, or with force (but never
// while a mount is left under it).
func (r *Runtime) sweep(ctx context.Context, p pod, force bool) error {
	l, err := lockfile.TryLockDir(p.path, true)
	if err != nil {
		return err
	}
	defer l.Unlock()
	if _, err := os.Lstat(p.path); err != nil {
		return err // removed by whoever held the lock before us
	}
	errs := []error{r.teardownNetwork(context.WithoutCancel(ctx), p)}
	for _, m := range mountsUnder(p.path) {
		errs = append(errs, unmount(m))
	}
	// A supervisor killed before it could remove its cgroups leaves them
	// recorded in the pod directory.
	errs = append(errs, removeCgroups(p.path, p.uuid))
	ents, _ := os.ReadDir(filepath.Join(p.path, "apps"))
	for _, e := range ents {
		errs = append(errs, rootfs.Remove(r.images, filepath.Join(p.path, "apps", e.Name()), leaseID(p.uuid, e.Name())))
	}
	vols, _ := os.ReadDir(filepath.Join(p.path, VolumesDir))
	for _, e := range vols {
		errs = append(errs, rootfs.Remove(r.images, filepath.Join(p.path, VolumesDir, e.Name()), volumeLease(p.uuid, e.Name())))
	}
	failed := errors.Join(errs...)
	if failed != nil && !force {
		return fmt.Errorf("pod %s: %w; it is kept with the record of what is left: `karman gc` retries, `karman rm --force %s` removes it anyway", p.uuid, failed, p.uuid)
	}
	if m := mountsUnder(p.path); len(m) > 0 {
		return fmt.Errorf("pod %s: %w; mounts are left under it (%s), so it is not removed: unmount them and run `karman rm --force %s`", p.uuid, failed, strings.Join(m, ", "), p.uuid)
	}
	if err := os.RemoveAll(p.path); err != nil {
		return fmt.Errorf("pod %s: %w", p.uuid, errors.Join(failed, err))
	}
	if failed != nil {
		return fmt.Errorf("pod %s removed, but these are left on the host; remove them by hand: %w", p.uuid, failed)
	}
	return nil
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// State returns a pod's state alone, which costs two system calls for a
// whole UUID (Status reads everything about the pod).
func (r *Runtime) State(_ context.Context, uuid string) (State, error) {
	p, err := r.find(uuid)
	if err != nil {
		return "", err
	}
	return p.state(), nil
}

// WaitStarted blocks until every app of a running pod has started, or the
// pod has ended, or ctx ends, and returns the pod's status then (without
// the apps' cgroup usage). Run with Detach returns once the supervisor
// runs; this is the rest of the start.
func (r *Runtime) WaitStarted(ctx context.Context, uuid string) (PodInfo, error) {
	p, err := r.find(uuid)
	if err != nil {
		return PodInfo{}, err
	}
	delay := 500 * time.Microsecond
	for {
		if _, err := os.Stat(filepath.Join(p.path, poddir.Started)); err == nil {
			return r.readInfo(p, false), nil
		}
		if s := p.state(); s != Running {
			if np, err := r.relocate(p); err == nil {
				p = np
			}
			return r.readInfo(p, false), nil
		}
		select {
		case <-ctx.Done():
			return r.readInfo(p, false), fmt.Errorf("pod %s: waiting for its apps to start: %w", p.uuid, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 20*time.Millisecond)
	}
}
