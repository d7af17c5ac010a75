package stage0

import (
	"context"
	"fmt"

	"github.com/karman-project/karman/stage1"
	"github.com/karman-project/karman/stage1/poddir"
)

// AttachOptions are the streams of an attach session (see
// stage1.AttachOptions).
type AttachOptions = stage1.AttachOptions

// Attach attaches o's streams to the stdio of app o.App of running pod
// uuid (the only app when empty): its output from now on, and its stdin
// when it was added with one (AppSpec.Stdin, TTY). It returns nil once
// the app's output has ended, ctx.Err() when ctx is done first.
func (r *Runtime) Attach(ctx context.Context, uuid string, o AttachOptions) error {
	p, err := r.find(uuid)
	if err != nil {
		return err
	}
	if s := p.state(); s != Running {
		return fmt.Errorf("attach: pod %s is %s, not running: %w", p.uuid, s, ErrState)
	}
	pd, err := poddir.Load(p.path)
	if err != nil {
		return err
	}
	if o.App == "" {
		if len(pd.Apps) != 1 {
			return fmt.Errorf("attach: pod %s has %d apps; choose one with --app", p.uuid, len(pd.Apps))
		}
		o.App = pd.Apps[0].Name
	} else if _, err := appByName(p, pd, o.App, "attach"); err != nil {
		return err
	}
	if err := stage1.Attach(ctx, p.path, o); err != nil {
		return fmt.Errorf("pod %s: %w", p.uuid, err)
	}
	return nil
}
