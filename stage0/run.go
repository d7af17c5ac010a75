package stage0

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/karman-project/karman/stage1"
	"github.com/karman-project/karman/stage1/poddir"
)

// RunOptions are how a pod runs, as opposed to what it is.
type RunOptions struct {
	// UUIDFile receives the pod's UUID before it starts.
	UUIDFile string
	// Detach starts the supervisor as a child in its own session and
	// returns at once; the pod's output is kept in its directory.
	Detach bool
	// Exited, with Detach, is called from a goroutine once the detached
	// supervisor has ended, if the caller still runs then (the node
	// agent learns of exits at once this way). The supervisor is reaped
	// either way.
	Exited func(uuid string)
	Debug  bool
}

// Run prepares a pod and runs it: the calling process becomes the pod's
// supervisor (stage1) and Run returns the pod's exit status when the pod
// has ended. The caller exits with it. With o.Detach, Run starts the
// supervisor as a child and returns 0 once it runs.
func (r *Runtime) Run(ctx context.Context, spec PodSpec, o RunOptions) (string, int, error) {
	start := time.Now()
	// A stage1 binary that is missing or would be refused fails the run
	// before any of the pod is made.
	bin, err := stage1.Binary()
	if err != nil {
		return "", 0, err
	}
	p, lock, err := r.create(ctx, spec, true)
	if err != nil {
		return "", 0, err
	}
	r.log.Debug("pod created", "pod", p.uuid, "elapsed", time.Since(start))
	if p, err = r.move(p, "run"); err != nil {
		r.discard(p)
		lock.Unlock()
		return "", 0, err
	}
	code, err := r.supervise(p, lock.File(), bin, o)
	return p.uuid, code, err
}

// RunPrepared runs a prepared pod, like Run.
func (r *Runtime) RunPrepared(ctx context.Context, uuid string, o RunOptions) (int, error) {
	p, err := r.find(uuid)
	if err != nil {
		return 0, err
	}
	if p.stateDir != "prepared" {
		return 0, fmt.Errorf("pod %s is %s, not prepared: %w", p.uuid, p.state(), ErrState)
	}
	bin, err := stage1.Binary()
	if err != nil {
		return 0, err
	}
	f, err := os.Open(p.path)
	if err != nil {
		return 0, err
	}
	lock, err := lockExclusive(f)
	if err != nil {
		return 0, fmt.Errorf("pod %s is being started by another process: %w", p.uuid, err)
	}
	if err := r.setupNetwork(ctx, p); err != nil {
		lock.Close()
		return 0, fmt.Errorf("pod %s: %w", p.uuid, err)
	}
	if p, err = r.move(p, "run"); err != nil {
		r.teardownNetwork(ctx, p)
		lock.Close()
		return 0, err
	}
	return r.supervise(p, lock, bin, o)
}

// supervise makes the pod's cgroups and hands the locked pod to its
// supervisor, the stage1 binary bin (stage1.Launch): in the foreground
// the calling process becomes the supervisor (same PID, same lock) and
// supervise returns only on failure; with o.Detach the supervisor is a
// child in its own session and supervise returns 0 once it runs.
func (r *Runtime) supervise(p pod, lock *os.File, bin string, o RunOptions) (int, error) {
	fail := func(err error) (int, error) {
		r.discard(p)
		lock.Close()
		return 0, fmt.Errorf("pod %s: %w", p.uuid, err)
	}
	if o.UUIDFile != "" {
		if err := os.WriteFile(o.UUIDFile, []byte(p.uuid+"\n"), 0o644); err != nil {
			return fail(fmt.Errorf("--uuid-file-save: %w", err))
		}
	}
	pd := p.spec
	if pd == nil {
		var err error
		if pd, err = poddir.Load(p.path); err != nil {
			return fail(err)
		}
	}
	if _, err := r.makeCgroups(p, pd); err != nil {
		return fail(err)
	}
	cmd, err := stage1.Launch(p.path, lock, stage1.LaunchOptions{Binary: bin, Debug: o.Debug, Detach: o.Detach})
	if err != nil {
		return fail(err)
	}
	lock.Close() // the detached supervisor holds its own copy of the lock
	go func() {
		cmd.Wait() // reap it: a long-lived caller must not collect zombies
		if o.Exited != nil {
			o.Exited(p.uuid)
		}
	}()
	return 0, nil
}

// EnterOptions are the command Enter runs in an app of a running pod and
// its streams (see stage1.EnterOptions): App may be empty for a pod of one
// app, Args defaults to /bin/sh.
type EnterOptions = stage1.EnterOptions

// TermSize is a terminal's size, as EnterOptions.Resize carries it.
type TermSize = stage1.TermSize

// Enter runs o.Args in app o.App of a running pod (the only app when
// empty), in the app's namespaces, root, cgroup, isolation, user and
// environment, with o's streams, and returns its exit status. Cancelling
// ctx (a deadline, say) kills the command and returns ctx.Err().
func (r *Runtime) Enter(ctx context.Context, uuid string, o EnterOptions) (int, error) {
	p, err := r.find(uuid)
	if err != nil {
		return 0, err
	}
	if s := p.state(); s != Running {
		return 0, fmt.Errorf("pod %s is %s, not running: %w", p.uuid, s, ErrState)
	}
	pd, err := poddir.Load(p.path)
	if err != nil {
		return 0, err
	}
	if o.App == "" {
		if len(pd.Apps) != 1 {
			return 0, fmt.Errorf("pod %s has %d apps; choose one with --app", p.uuid, len(pd.Apps))
		}
		o.App = pd.Apps[0].Name
	} else if _, err := appByName(p, pd, o.App, "enter"); err != nil {
		return 0, err
	}
	if len(o.Args) == 0 {
		o.Args = []string{"/bin/sh"}
	}
	return stage1.Enter(ctx, p.path, o)
}
