package stage0

import (
	"context"
	"fmt"
	"os"

	"github.com/karman-project/karman/stage1"
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
	p, lock, err := r.create(ctx, spec)
	if err != nil {
		return "", 0, err
	}
	if p, err = r.move(p, "run"); err != nil {
		r.discard(p)
		lock.Unlock()
		return "", 0, err
	}
	code, err := r.supervise(p, lock.File(), o)
	return p.uuid, code, err
}

// RunPrepared runs a prepared pod, like Run.
func (r *Runtime) RunPrepared(_ context.Context, uuid string, o RunOptions) (int, error) {
	p, err := r.find(uuid)
	if err != nil {
		return 0, err
	}
	if p.stateDir != "prepared" {
		return 0, fmt.Errorf("pod %s is %s, not prepared: %w", p.uuid, p.state(), ErrState)
	}
	f, err := os.Open(p.path)
	if err != nil {
		return 0, err
	}
	lock, err := lockExclusive(f)
	if err != nil {
		return 0, fmt.Errorf("pod %s is being started by another process: %w", p.uuid, err)
	}
	if p, err = r.move(p, "run"); err != nil {
		lock.Close()
		return 0, err
	}
	return r.supervise(p, lock, o)
}

// supervise hands the locked pod to stage1. The supervisor runs in this
// very process (same PID, same lock) rather than after another exec of
// the binary, which would cost a Go start-up on every pod start; the
// re-exec entrypoint (stage1.Exec, stage1.Command) remains the versioned
// interface for a detached supervisor.
func (r *Runtime) supervise(p pod, lock *os.File, o RunOptions) (int, error) {
	if o.UUIDFile != "" {
		if err := os.WriteFile(o.UUIDFile, []byte(p.uuid+"\n"), 0o644); err != nil {
			return 0, fmt.Errorf("--uuid-file-save: %w", err)
		}
	}
	opts := stage1.ExecOptions{Debug: o.Debug}
	if !o.Detach {
		return stage1.Supervise(p.path, lock, opts), nil
	}
	cmd, err := stage1.Command(p.path, lock, opts)
	if err == nil {
		err = cmd.Start()
	}
	lock.Close() // the supervisor holds its own copy of the lock now
	if err != nil {
		r.discard(p)
		return 0, fmt.Errorf("pod %s: starting the supervisor: %w", p.uuid, err)
	}
	go func() {
		cmd.Wait() // reap it: a long-lived caller must not collect zombies
		if o.Exited != nil {
			o.Exited(p.uuid)
		}
	}()
	return 0, nil
}

// Enter runs argv in an app of a running pod (the only app when app is
// empty) and returns its exit status.
func (r *Runtime) Enter(ctx context.Context, uuid, app string, argv []string, tty bool) (int, error) {
	p, err := r.find(uuid)
	if err != nil {
		return 0, err
	}
	if s := p.state(); s != Running {
		return 0, fmt.Errorf("pod %s is %s, not running: %w", p.uuid, s, ErrState)
	}
	pd, err := stage1.LoadPod(p.path)
	if err != nil {
		return 0, err
	}
	if app == "" {
		if len(pd.Apps) != 1 {
			return 0, fmt.Errorf("pod %s has %d apps; choose one with --app", p.uuid, len(pd.Apps))
		}
		app = pd.Apps[0].Name
	}
	if len(argv) == 0 {
		argv = []string{"/bin/sh"}
	}
	return stage1.Enter(ctx, p.path, app, argv, nil, os.Stdin, os.Stdout, os.Stderr, tty)
}
