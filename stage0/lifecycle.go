package stage0

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	return stage1.Stop(p.path, force)
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
