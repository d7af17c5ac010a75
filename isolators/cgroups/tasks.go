package cgroups

import (
	"errors"
	"path/filepath"

	"github.com/containerd/cgroups/v3/cgroup1"
)

// TaskFiles lists the "tasks" file of the app's cgroup in every v1
// hierarchy: a caller that opens them before it loses sight of the cgroup
// filesystem (a pod init after pivot_root) can still move a thread in by
// writing its TID. On v2 there is no per-thread membership: ErrThreadJoin.
func (a *App) TaskFiles() ([]string, error) {
	if a.v1 == nil {
		return nil, ErrThreadJoin
	}
	subs, err := v1Hierarchy()
	if err != nil {
		return nil, err
	}
	dirs := v1Dirs(subs, a.path)
	if len(dirs) == 0 {
		return nil, errors.New("cgroups: no v1 hierarchy holds " + a.path)
	}
	files := make([]string, len(dirs))
	for i, d := range dirs {
		files[i] = filepath.Join(d, "tasks")
	}
	return files, nil
}

// OOMFile is the file whose "oom_kill N" line counts the processes the
// OOM killer ended in the app's cgroup: memory.oom_control in the v1
// memory hierarchy, memory.events on v2. It is "" where the host has no
// memory controller.
func (a *App) OOMFile() string {
	if a.v2 != nil {
		return filepath.Join(a.v2Dir, "memory.events")
	}
	subs, err := v1Hierarchy()
	if err != nil {
		return ""
	}
	for _, s := range subs {
		if p, ok := s.(pather); ok && s.Name() == cgroup1.Memory {
			return filepath.Join(p.Path("/"), a.path, "memory.oom_control")
		}
	}
	return ""
}

// Dir is the app's cgroup2 directory on v2 (a process can be started in
// it with clone3 and CLONE_INTO_CGROUP), "" on v1 and hybrid hosts.
func (a *App) Dir() string { return a.v2Dir }

// CPUTaskFiles lists the "tasks" file of the pod's own cgroup in the v1
// cpu and cpuacct hierarchies (once where they are co-mounted). A thread
// that writes "0" there moves itself, and the processes it forks start
// there: karman starts the pod's init so, which puts the init's work
// under the pod's CPU weight and accounting. On v2 it returns nil.
func (p *Pod) CPUTaskFiles() ([]string, error) {
	h, err := hostFor(p.Hierarchy)
	if err != nil || h.v2 {
		return nil, err
	}
	subs, err := v1Hierarchy()
	if err != nil {
		return nil, err
	}
	var cpu []cgroup1.Subsystem
	for _, s := range subs {
		if s.Name() == cgroup1.Cpu || s.Name() == cgroup1.Cpuacct {
			cpu = append(cpu, s)
		}
	}
	var files []string
	for _, d := range v1Dirs(cpu, cleanCgroupPath(p.Path)) {
		files = append(files, filepath.Join(d, "tasks"))
	}
	return files, nil
}
