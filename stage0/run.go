package stage0

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/karman-project/karman/isolators/cgroups"
	"github.com/karman-project/karman/network"
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
	start := time.Now()
	// A stage1 binary that would be refused fails the run before any of
	// the pod is made.
	bin, err := stage1.Binary()
	if err != nil {
		return "", 0, err
	}
	// The pod's init is started as soon as the pod is found valid, so that
	// its runtime starts while this process makes the pod; the pod's
	// networks, if any, are made in the init's own network namespace.
	var startInit func(PodSpec) (*stage1.Init, error)
	if bin != "" && !o.Detach {
		startInit = func(spec PodSpec) (*stage1.Init, error) {
			return stage1.StartInit(stage1.InitOptions{
				Binary: bin, HostNet: spec.Net == network.Host, CgroupV2: cgroups.Mode() == "v2", Interactive: spec.Interactive,
			})
		}
	}
	p, lock, init, err := r.create(ctx, spec, true, startInit)
	if err != nil {
		return "", 0, err
	}
	r.log.Debug("pod created", "pod", p.uuid, "elapsed", time.Since(start))
	if p, err = r.move(p, "run"); err != nil {
		init.Close()
		r.discard(p)
		lock.Unlock()
		return "", 0, err
	}
	code, err := r.supervise(p, lock.File(), bin, init, o)
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
	return r.supervise(p, lock, bin, nil, o)
}

// supervise makes the pod's cgroups and hands the locked pod to stage1:
// the calling process supervises it, and execs the lean stage1 binary
// (same PID, same lock) if the pod runs on (stage1.Exec), so that what
// stays in memory while the pod runs is the small supervisor rather than
// this process. bin is the stage1 binary (stage1.Binary);
// without one ("") the supervisor runs in this very process. init, if
// not nil, is the pod's init, started beforehand (stage1.StartInit), which
// supervise hands to stage1 or closes. With o.Detach the supervisor is
// started as a child in its own session instead.
func (r *Runtime) supervise(p pod, lock *os.File, bin string, init *stage1.Init, o RunOptions) (int, error) {
	fail := func(err error) (int, error) {
		init.Close()
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
		if pd, err = stage1.LoadPod(p.path); err != nil {
			return fail(err)
		}
	}
	cg, err := r.makeCgroups(p, pd)
	if err != nil {
		return fail(err)
	}
	opts := stage1.ExecOptions{Debug: o.Debug, Binary: bin, Pod: pd, Cgroups: cg}
	if !o.Detach {
		if bin == "" {
			r.log.Debug("no stage1 binary beside karman: supervising in this process", "want", stage1.BinaryName)
			return stage1.Supervise(p.path, lock, opts), nil
		}
		opts.Init, init = init, nil // Exec takes it over
		code, err := stage1.Exec(p.path, lock, opts)
		if err != nil {
			return fail(err)
		}
		return code, nil // the pod ended before Exec handed it over
	}
	cmd, err := stage1.Command(p.path, lock, opts)
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		return fail(fmt.Errorf("starting the supervisor: %w", err))
	}
	lock.Close() // the supervisor holds its own copy of the lock now
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
