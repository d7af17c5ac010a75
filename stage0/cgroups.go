package stage0

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/karman-project/karman/isolators/cgroups"
	"github.com/karman-project/karman/stage1"
)

// makeCgroups creates the pod's cgroup, with one child per app and the
// app's limits applied, before stage1 starts, and tells stage1 which
// files to use (stage1.CgroupsFile). The cgroup's path is recorded in the
// pod directory (stage1.CgroupFile) before it is created, so that gc can
// always remove it.
//
// On cgroup v2 hosts a thread cannot join a cgroup on its own; starting
// apps there with clone3 into the cgroup conflicts with the seccomp filter
// of the thread that forks them, so v2 pods run without cgroups of their
// own for now and refuse resource limits with a clear error.
func (r *Runtime) makeCgroups(p pod) error {
	start := time.Now()
	pd, err := stage1.LoadPod(p.path)
	if err != nil {
		return err
	}
	if cgroups.Mode() == "v2" {
		for _, a := range pd.Apps {
			if a.Resources != (stage1.Resources{}) {
				return fmt.Errorf("app %s: resource limits need cgroup v1 or hybrid for now; this host is cgroup v2 only: run the pod without --memory, --cpu, --cpu-shares and --pids-limit", a.Name)
			}
		}
		return nil
	}
	parent, err := cgroups.Parent()
	if err != nil {
		return err
	}
	if err := stage1.RecordCgroup(p.path, path.Join(parent, pd.UUID)); err != nil {
		return err
	}
	cg, err := cgroups.NewPod(parent, pd.UUID)
	if err != nil {
		return err
	}
	files := stage1.Cgroups{Apps: map[string]stage1.AppCgroup{}}
	for _, a := range pd.Apps {
		app, err := cg.AddApp(a.Name, cgroups.Resources(a.Resources))
		if err != nil {
			return fmt.Errorf("app %s: %w", a.Name, err)
		}
		tasks, err := app.TaskFiles()
		if err != nil {
			return fmt.Errorf("app %s: %w", a.Name, err)
		}
		files.Apps[a.Name] = stage1.AppCgroup{Tasks: tasks, OOM: app.OOMFile()}
	}
	if err := stage1.WriteCgroups(p.path, files); err != nil {
		return err
	}
	r.log.Debug("cgroups made", "pod", p.uuid, "elapsed", time.Since(start))
	return nil
}

// removeCgroups deletes the cgroups recorded in podDir, if any, with
// whatever still runs in them.
func removeCgroups(podDir string) error {
	b, err := os.ReadFile(filepath.Join(podDir, stage1.CgroupFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	p := strings.TrimSpace(string(b))
	if p == "" || p == "/" {
		return nil
	}
	if err := cgroups.OpenPod(p).Delete(); err != nil {
		return err
	}
	return os.Remove(filepath.Join(podDir, stage1.CgroupFile))
}

// appUsage reads the cgroup usage of each app of a running pod.
func appUsage(podDir string, p *stage1.Pod) map[string]cgroups.Stats {
	b, err := os.ReadFile(filepath.Join(podDir, stage1.CgroupFile))
	if err != nil {
		return nil
	}
	out := map[string]cgroups.Stats{}
	for _, a := range p.Apps {
		app, err := cgroups.OpenApp(strings.TrimSpace(string(b)), a.Name)
		if err != nil {
			continue
		}
		if st, err := app.Stats(); err == nil {
			out[a.Name] = st
		}
	}
	return out
}
