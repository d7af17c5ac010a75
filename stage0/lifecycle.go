package stage0

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/karman-project/karman/image/rootfs"
	"github.com/karman-project/karman/internal/lockfile"
	"github.com/karman-project/karman/stage1"
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
	p, err := r.find(uuid)
	if err != nil {
		return err
	}
	if s := p.state(); s != Running {
		return fmt.Errorf("pod %s is %s, not running: %w", p.uuid, s, ErrState)
	}
	b, err := os.ReadFile(filepath.Join(p.path, stage1.SupervisorPID))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("pod %s is starting and has no supervisor PID yet; try again: %w", p.uuid, ErrState)
	}
	// The lock was held a moment ago, so the PID is the supervisor's; a
	// supervisor that ended since leaves ESRCH.
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("pod %s: signal %d to its supervisor (pid %d): %w", p.uuid, sig, pid, err)
	}
	return nil
}

// Remove deletes an exited or prepared pod at once.
func (r *Runtime) Remove(_ context.Context, uuid string) error {
	p, err := r.find(uuid)
	if err != nil {
		return err
	}
	switch s := p.state(); s {
	case Running:
		return fmt.Errorf("pod %s is running; stop it first with `karman stop %s`: %w", p.uuid, p.uuid, ErrState)
	case Preparing, Deleting:
		return fmt.Errorf("pod %s is %s by another karman process: %w", p.uuid, s, ErrState)
	case Exited:
		if p, err = r.move(p, "exited-garbage"); err != nil {
			return err
		}
	case Prepared, Embryo:
		if p, err = r.move(p, "garbage"); err != nil {
			return err
		}
	}
	return r.sweep(p)
}

// GCResult says what gc did.
type GCResult struct {
	Marked  []string `json:"marked"`
	Removed []string `json:"removed"`
}

// GC marks exited pods (and abandoned prepares) as garbage and removes
// the garbage older than grace. With markOnly it only marks.
func (r *Runtime) GC(ctx context.Context, grace time.Duration, markOnly bool) (GCResult, error) {
	res := GCResult{Marked: []string{}, Removed: []string{}}
	var errs []error
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
				// ports now rather than after the grace period.
				if err := r.teardownNetwork(ctx, np); err != nil {
					errs = append(errs, err)
				}
			} else if !errors.Is(err, ErrNotFound) {
				errs = append(errs, err)
			}
		}
	}
	if markOnly {
		return res, errors.Join(errs...)
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
			if err := r.sweep(p); errors.Is(err, lockfile.ErrWouldBlock) || errors.Is(err, os.ErrNotExist) {
				continue // another gc has it
			} else if err != nil {
				errs = append(errs, err)
				continue
			}
			res.Removed = append(res.Removed, p.uuid)
		}
	}
	return res, errors.Join(errs...)
}

// sweep removes a pod in a garbage directory completely: any mount left
// under it, its leases and its directory. It holds the pod's lock so two
// sweeps never run on one pod.
func (r *Runtime) sweep(p pod) error {
	l, err := lockfile.TryLockDir(p.path, true)
	if err != nil {
		return err
	}
	defer l.Unlock()
	if _, err := os.Lstat(p.path); err != nil {
		return err // removed by whoever held the lock before us
	}
	if err := r.teardownNetwork(context.Background(), p); err != nil {
		return fmt.Errorf("pod %s: %w", p.uuid, err)
	}
	var errs []error
	for _, m := range mountsUnder(p.path) {
		errs = append(errs, unmount(m))
	}
	// A supervisor killed before it could remove its cgroups leaves them
	// recorded in the pod directory.
	errs = append(errs, removeCgroups(p.path))
	ents, _ := os.ReadDir(filepath.Join(p.path, "apps"))
	for _, e := range ents {
		errs = append(errs, rootfs.Remove(r.images, filepath.Join(p.path, "apps", e.Name()), leaseID(p.uuid, e.Name())))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pod %s: %w", p.uuid, err)
	}
	if err := os.RemoveAll(p.path); err != nil {
		return fmt.Errorf("pod %s: %w", p.uuid, err)
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
		if _, err := os.Stat(filepath.Join(p.path, stage1.Started)); err == nil {
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
