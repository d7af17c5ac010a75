package stage1

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/karman-project/karman/isolators/cgroups"
)

// CgroupFile records the pod's cgroup path before the cgroup is created,
// so that whoever collects the pod can always remove it.
const CgroupFile = "state/cgroup"

// setupCgroups creates the pod's cgroup with one child per app, limits
// applied, and opens for the init what it starts each app into, so that
// the app starts inside its cgroup and never runs a moment outside it:
// on v1 and hybrid hosts the app's "tasks" files (the thread that forks
// the app writes "0" there first), on v2 the app's cgroup directory
// (the app is forked into it with clone3, see execshim.go).
func (s *supervisor) setupCgroups() ([][]*os.File, error) {
	v2 := cgroups.Mode() == "v2"
	if v2 {
		if err := checkShimRoom(s.pod.Apps); err != nil {
			return nil, err
		}
	}
	parent, err := cgroups.Parent()
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(s.path(CgroupFile), []byte(path.Join(parent, s.pod.UUID)+"\n")); err != nil {
		return nil, err
	}
	pod, err := cgroups.NewPod(parent, s.pod.UUID)
	if err != nil {
		return nil, err
	}
	s.cgroup = pod
	s.cgApps = map[string]*cgroups.App{}
	tasks := make([][]*os.File, len(s.pod.Apps))
	for i, a := range s.pod.Apps {
		app, err := pod.AddApp(a.Name, cgroups.Resources(a.Resources))
		if err != nil {
			return tasks, err
		}
		s.cgApps[a.Name] = app
		if v2 {
			fd, err := app.FD()
			if err != nil {
				return tasks, fmt.Errorf("app %s: %w", a.Name, err)
			}
			tasks[i] = []*os.File{os.NewFile(uintptr(fd), app.Path())}
			continue
		}
		files, err := app.TaskFiles()
		if err != nil {
			return tasks, err
		}
		for _, f := range files {
			t, err := os.OpenFile(f, os.O_WRONLY, 0)
			if err != nil {
				return tasks, fmt.Errorf("app %s: %w", a.Name, err)
			}
			tasks[i] = append(tasks[i], t)
		}
	}
	return tasks, nil
}

// prepareCgroupParent readies the pods' parent cgroup (v2).
func prepareCgroupParent() error {
	parent, err := cgroups.Parent()
	if err != nil {
		return err
	}
	return cgroups.PrepareParent(parent)
}

// oomKilled tells whether the memory controller killed a process of app.
func (s *supervisor) oomKilled(app string) bool {
	a := s.cgApps[app]
	if a == nil {
		return false
	}
	st, err := a.Stats()
	return err == nil && st.OOMKills > 0
}

// RemoveCgroups deletes the cgroups recorded in podDir, if any: what a
// supervisor killed before it could remove them leaves to gc.
func RemoveCgroups(podDir string) error {
	b, err := os.ReadFile(path.Join(podDir, CgroupFile))
	if os.IsNotExist(err) {
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
	return os.Remove(path.Join(podDir, CgroupFile))
}

// AppUsage reads the cgroup usage of each app of a running pod in podDir.
func AppUsage(podDir string, p *Pod) map[string]cgroups.Stats {
	b, err := os.ReadFile(path.Join(podDir, CgroupFile))
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

// On cgroup v2 an app starts through the exec shim inside its cgroup: a
// Go program of up to 5 threads and a few MiB for a moment before it
// becomes the app, which the app's limits must leave room for.
const (
	minV2PidsLimit   = 8
	minV2MemoryBytes = 16 << 20
)

// checkShimRoom refuses limits the exec shim cannot start under.
func checkShimRoom(apps []App) error {
	var errs []error
	for _, a := range apps {
		if r := a.Resources; r.PidsLimit > 0 && r.PidsLimit < minV2PidsLimit {
			errs = append(errs, fmt.Errorf("app %s: --pids-limit %d is too low on cgroup v2: the app starts through karman's exec shim inside its cgroup, which needs %d tasks for a moment; use --pids-limit %d or more", a.Name, r.PidsLimit, minV2PidsLimit, minV2PidsLimit))
		}
		if r := a.Resources; r.MemoryBytes > 0 && r.MemoryBytes < minV2MemoryBytes {
			errs = append(errs, fmt.Errorf("app %s: --memory %d is too low on cgroup v2: the app starts through karman's exec shim inside its cgroup; use --memory 16M or more", a.Name, r.MemoryBytes))
		}
	}
	return errors.Join(errs...)
}
