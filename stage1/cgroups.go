package stage1

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// CgroupFile records the pod's cgroup path before stage0 creates the
// cgroup, so that whoever collects the pod can always remove it.
const CgroupFile = "state/cgroup"

// CgroupsFile is written by stage0 once it has made the pod's cgroups,
// before stage1 starts: the files of each app's cgroup that stage1 uses
// (Cgroups). It is absent where pods get no cgroups. stage1 itself links
// no cgroup library: making, reading and removing cgroups is stage0's.
const CgroupsFile = "state/cgroups.json"

// Cgroups is CgroupsFile: each app's cgroup files, by app name.
type Cgroups struct {
	Apps map[string]AppCgroup `json:"apps"`
}

// AppCgroup is what stage1 needs of an app's cgroup.
type AppCgroup struct {
	// Tasks are the files a thread writes "0" to in order to join the
	// app's cgroup (v1: the "tasks" file of every hierarchy).
	Tasks []string `json:"tasks"`
	// OOM is the file whose "oom_kill N" line counts the app's OOM kills.
	OOM string `json:"oom,omitempty"`
}

// RecordCgroup records the pod's cgroup path in podDir (CgroupFile);
// stage0 calls it before it creates the cgroup.
func RecordCgroup(podDir, cgroup string) error {
	if err := os.MkdirAll(filepath.Join(podDir, StateDir), 0o755); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(podDir, CgroupFile), []byte(cgroup+"\n"))
}

// WriteCgroups records the pod's cgroup files for stage1 (stage0 calls
// it once it has made the cgroups).
func WriteCgroups(podDir string, cg Cgroups) error {
	return writeJSONAtomic(filepath.Join(podDir, CgroupsFile), cg)
}

// loadCgroups reads CgroupsFile; a pod without one has no cgroups.
func (s *supervisor) loadCgroups() error {
	var cg Cgroups
	if err := readJSON(s.path(CgroupsFile), &cg); err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("pod cgroups: %w", err)
	}
	s.cgroups = cg.Apps
	return nil
}

// openTasks opens each app's cgroup task files for the init, in the order
// of the pod's apps: the thread that forks an app writes "0" to them
// first, so the app starts inside its cgroup and never runs a moment
// outside it.
func (s *supervisor) openTasks() ([][]*os.File, error) {
	if s.cgroups == nil {
		return nil, nil
	}
	tasks := make([][]*os.File, len(s.pod.Apps))
	for i, a := range s.pod.Apps {
		for _, name := range s.cgroups[a.Name].Tasks {
			t, err := os.OpenFile(name, os.O_WRONLY, 0)
			if err != nil {
				return tasks, fmt.Errorf("app %s: joining its cgroup: %w", a.Name, err)
			}
			tasks[i] = append(tasks[i], t)
		}
	}
	return tasks, nil
}

// oomKilled tells whether the OOM killer ended a process of app.
func (s *supervisor) oomKilled(app string) bool {
	name := s.cgroups[app].OOM
	if name == "" {
		return false
	}
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "oom_kill "); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return err == nil && n > 0
		}
	}
	return false
}
