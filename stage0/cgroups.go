package stage0

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/karman-project/karman/isolators/cgroups"
	"github.com/karman-project/karman/stage1/poddir"
)

// CgroupParentFile holds a pod's PodSpec.CgroupParent, when it has one
// (stage0's, not part of the stage1 interface).
const CgroupParentFile = "cgroup-parent"

// makeCgroups creates the pod's cgroup, with one child per app and the
// app's limits applied, before stage1 starts, and tells stage1 which
// files to use (poddir.CgroupsFile): on v1 and hybrid hosts each app's
// task files, which the thread that forks the app joins; on v2 each
// app's directory, which the app is forked into with clone3. The
// cgroup's path is recorded in the pod directory (poddir.CgroupFile)
// before it is created, so that gc can always remove it. It returns the
// files it recorded for stage1. pd is the pod's pod.json.
func (r *Runtime) makeCgroups(p pod, pd *poddir.Pod) (*poddir.Cgroups, error) {
	start := time.Now()
	v2, err := r.CgroupHierarchy.V2()
	if err != nil {
		return nil, err
	}
	if v2 {
		if err := poddir.CheckV2Limits(pd.Apps); err != nil {
			return nil, err
		}
	}
	parent, err := cgroups.Parent()
	if err != nil {
		return nil, err
	}
	if b, err := os.ReadFile(filepath.Join(p.path, CgroupParentFile)); err == nil {
		parent = strings.TrimSpace(string(b)) // PodSpec.CgroupParent
	}
	if err := poddir.RecordCgroup(p.path, path.Join(parent, pd.UUID)); err != nil {
		return nil, err
	}
	cg, err := cgroups.NewPod(r.CgroupHierarchy, parent, pd.UUID)
	if err != nil {
		return nil, err
	}
	files := &poddir.Cgroups{V2: v2, Apps: map[string]poddir.AppCgroup{}}
	for _, a := range pd.Apps {
		app, err := cg.AddApp(a.Name, appResources(a))
		if err != nil {
			return nil, fmt.Errorf("app %s: %w", a.Name, err)
		}
		ac := poddir.AppCgroup{OOM: app.OOMFile(), Dir: app.Dir()}
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
	if err := poddir.WriteCgroups(p.path, *files); err != nil {
		return nil, err
	}
	r.log.Debug("cgroups made", "pod", p.uuid, "elapsed", time.Since(start))
	return files, nil
}

// appResources are what the app's cgroup is made with: its limits and
// the devices it may use.
func appResources(a poddir.App) cgroups.Resources {
	r := a.Resources
	return cgroups.Resources{
		MemoryBytes: r.MemoryBytes, CPUMillis: r.CPUMillis, CPUShares: r.CPUShares, PidsLimit: r.PidsLimit,
		Devices: deviceRules(a),
	}
}

// removeCgroups deletes the pod's cgroups, with whatever still runs in
// them: those recorded in podDir (poddir.CgroupFile), or, when the record
// is missing or names another pod's (a damaged pod directory), those at
// the place karman makes them, <parent>/UUID, under this process's parent
// and under "/karman".
func removeCgroups(podDir, uuid string) error {
	b, err := os.ReadFile(filepath.Join(podDir, poddir.CgroupFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var paths []string
	if p := strings.TrimSpace(string(b)); path.Base(p) == uuid {
		paths = []string{p}
	} else {
		paths = []string{path.Join("/karman", uuid)}
		if parent, err := cgroups.Parent(); err == nil && parent != "/karman" {
			paths = append(paths, path.Join(parent, uuid))
		}
	}
	for _, p := range paths {
		if err := cgroups.OpenPod(cgroups.Auto, p).Delete(); err != nil {
			return err
		}
	}
	if err := os.Remove(filepath.Join(podDir, poddir.CgroupFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// appUsage reads the cgroup usage of each app of a running pod.
func appUsage(podDir string, p *poddir.Pod) map[string]cgroups.Stats {
	b, err := os.ReadFile(filepath.Join(podDir, poddir.CgroupFile))
	if err != nil {
		return nil
	}
	var cg poddir.Cgroups
	if err := poddir.ReadJSON(filepath.Join(podDir, poddir.CgroupsFile), &cg); err != nil {
		return nil
	}
	out := map[string]cgroups.Stats{}
	for _, a := range p.Apps {
		app, err := cgroups.OpenApp(podHierarchy(cg), strings.TrimSpace(string(b)), a.Name)
		if err != nil {
			continue
		}
		if st, err := app.Stats(); err == nil {
			out[a.Name] = st
		}
	}
	return out
}

// podHierarchy is the hierarchy a pod was made in, from its CgroupsFile:
// cgroup v2 (on a hybrid host its cgroup2 hierarchy) or v1.
func podHierarchy(cg poddir.Cgroups) cgroups.Hierarchy {
	if cg.V2 {
		return cgroups.Unified
	}
	return cgroups.V1
}

// AppMetrics reads the detailed cgroup counters of each running app of
// a running pod (cgroups.Metrics), by app; an app whose cgroup cannot be
// read is left out.
func (r *Runtime) AppMetrics(_ context.Context, uuid string) (map[string]cgroups.Metrics, error) {
	p, err := r.find(uuid)
	if err != nil {
		return nil, err
	}
	out := map[string]cgroups.Metrics{}
	if p.state() != Running {
		return out, nil
	}
	pd, err := poddir.Load(p.path)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(p.path, poddir.CgroupFile))
	if err != nil {
		return out, nil // a pod without cgroups
	}
	var cg poddir.Cgroups
	if err := poddir.ReadJSON(filepath.Join(p.path, poddir.CgroupsFile), &cg); err != nil {
		return nil, err
	}
	for _, a := range pd.Apps {
		app, err := cgroups.OpenApp(podHierarchy(cg), strings.TrimSpace(string(b)), a.Name)
		if err != nil {
			continue
		}
		if m, err := app.Metrics(); err == nil {
			out[a.Name] = m
		}
	}
	return out, nil
}
