package stage0

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/karman-project/karman/stage1/poddir"
)

// Logs writes the output kept for an app of the pod (the only app when app
// is empty) to w. With follow it keeps writing new output until the pod
// has exited or ctx ends.
func (r *Runtime) Logs(ctx context.Context, uuid, app string, follow bool, w io.Writer) error {
	p, err := r.find(uuid)
	if err != nil {
		return err
	}
	pd, err := poddir.Load(p.path)
	if err != nil {
		return fmt.Errorf("pod %s: %w", p.uuid, err)
	}
	if app == "" {
		if len(pd.Apps) != 1 {
			names := make([]string, len(pd.Apps))
			for i, a := range pd.Apps {
				names[i] = a.Name
			}
			return fmt.Errorf("pod %s has %d apps (%v); choose one with --app", p.uuid, len(pd.Apps), names)
		}
		app = pd.Apps[0].Name
	}
	found := false
	for _, a := range pd.Apps {
		found = found || a.Name == app
	}
	if !found {
		return fmt.Errorf("pod %s has no app %q: %w", p.uuid, app, ErrNotFound)
	}
	f, err := os.Open(filepath.Join(p.path, poddir.LogsDir, app+".log"))
	if errors.Is(err, os.ErrNotExist) {
		if !follow {
			return nil
		}
	} else if err != nil {
		return err
	} else {
		defer f.Close()
	}
	for {
		if f != nil {
			if _, err := io.Copy(w, f); err != nil {
				return err
			}
		}
		if !follow {
			return nil
		}
		if s := p.state(); s != Running && s != Prepared && s != Preparing {
			if f != nil {
				_, err := io.Copy(w, f) // what was written before it ended
				return err
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
		if f == nil {
			if f, err = os.Open(filepath.Join(p.path, poddir.LogsDir, app+".log")); err != nil {
				f = nil
			} else {
				defer f.Close()
			}
		}
		if np, err := r.relocate(p); err == nil {
			p = np
		}
	}
}
