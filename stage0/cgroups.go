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
// files to use (stage1.CgroupsFile): on v1 and hybrid hosts each app's
// task files, which the thread that forks the app joins; on v2 each
// app's directory, which the app is forked into with clone3. The
// cgroup's path is recorded in the pod directory (stage1.CgroupFile)
// before it is created, so that gc can always remove it. It returns the
// files it recorded for stage1. pd is the pod's pod.json.
func (r *Runtime) makeCgroups(p pod, pd *stage1.Pod) (*stage1.Cgroups, error) {
	start := time.Now()
	v2 := cgroups.Mode() == "v2"
	if v2 {
		if err := stage1.CheckV2Limits(pd.Apps); err != nil {
			return nil, err
		}
	}
	parent, err := cgroups.Parent()
	if err != nil {
		return nil, err
	}
	if err := stage1.RecordCgroup(p.path, path.Join(parent, pd.UUID)); err != nil {
		return nil, err
	}
	cg, err := cgroups.NewPod(parent, pd.UUID)
	if err != nil {
		return nil, err
	}
	files := &stage1.Cgroups{V2: v2, Apps: map[string]stage1.AppCgroup{}}
	for _, a := range pd.Apps {
		app, err := cg.AddApp(a.Name, cgroups.Resources(a.Resources))
		if err != nil {
			return nil, fmt.Errorf("app %s: %w", a.Name, err)
		}
		ac := stage1.AppCgroup{OOM: app.OOMFile(), Dir: app.Dir()}
		if !v2 {
			if ac.Tasks, err = app.TaskFiles(); err != nil {
				return nil, fmt.Errorf("app %s: %w", a.Name, err)
			}
		}
		files.Apps[a.Name] = ac
	}
	if files.Init, err = cg.CPUTaskFiles(); err != nil {
		return nil, err
	}
	if err := stage1.WriteCgroups(p.path, *files); err != nil {
		return nil, err
	}
	r.log.Debug("cgroups made", "pod", p.uuid, "elapsed", time.Since(start))
	return files, nil
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
