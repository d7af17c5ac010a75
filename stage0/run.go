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
	Debug    bool
}

// Run prepares a pod and runs it in this process: on success it does not
// return, because the process becomes the pod's supervisor (stage1) and
// exits with the pod's status.
func (r *Runtime) Run(ctx context.Context, spec PodSpec, o RunOptions) error {
	p, lock, err := r.create(ctx, spec)
	if err != nil {
		return err
	}
	if p, err = r.move(p, "run"); err != nil {
		r.discard(p)
		lock.Unlock()
		return err
	}
	return r.exec(p, lock.File(), o)
}

// RunPrepared runs a prepared pod in this process, like Run.
func (r *Runtime) RunPrepared(_ context.Context, uuid string, o RunOptions) error {
	p, err := r.find(uuid)
	if err != nil {
		return err
	}
	if p.stateDir != "prepared" {
		return fmt.Errorf("pod %s is %s, not prepared: %w", p.uuid, p.state(), ErrState)
	}
	f, err := os.Open(p.path)
	if err != nil {
		return err
	}
	lock, err := lockExclusive(f)
	if err != nil {
		return fmt.Errorf("pod %s is being started by another process: %w", p.uuid, err)
	}
	if p, err = r.move(p, "run"); err != nil {
		lock.Close()
		return err
	}
	return r.exec(p, lock, o)
}

func (r *Runtime) exec(p pod, lock *os.File, o RunOptions) error {
	if o.UUIDFile != "" {
		if err := os.WriteFile(o.UUIDFile, []byte(p.uuid+"\n"), 0o644); err != nil {
			return fmt.Errorf("--uuid-file-save: %w", err)
		}
	}
	err := stage1.Exec(p.path, lock, stage1.ExecOptions{Debug: o.Debug})
	return fmt.Errorf("pod %s: starting stage1: %w", p.uuid, err)
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
