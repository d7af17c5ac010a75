package poddir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	// V2 says the pod's cgroups are in a cgroup2 hierarchy (a v2 host's,
	// or a hybrid host's with --cgroup-hierarchy=unified): apps are forked
	// into their cgroup with clone3 (AppCgroup.Dir) instead of joining it
	// by thread. Later commands on the pod follow it, not their option.
	V2   bool                 `json:"v2,omitempty"`
	Apps map[string]AppCgroup `json:"apps"`
	// Init are the "tasks" files of the pod's own cgroup in the v1 cpu
	// hierarchies: the thread that starts the pod's init joins them
	// first, so that the init's work is the pod's (CPU weight and
	// accounting), not the caller's.
	Init []string `json:"init,omitempty"`
}

// AppCgroup is what stage1 needs of an app's cgroup.
type AppCgroup struct {
	// Tasks are the files a thread writes "0" to in order to join the
	// app's cgroup (v1 and hybrid: the "tasks" file of every hierarchy).
	Tasks []string `json:"tasks,omitempty"`
	// Dir is the app's cgroup2 directory (v2), which the init starts the
	// app in with clone3 (CLONE_INTO_CGROUP).
	Dir string `json:"dir,omitempty"`
	// OOM is the file whose "oom_kill N" line counts the app's OOM kills.
	OOM string `json:"oom,omitempty"`
}

// RecordCgroup records the pod's cgroup path in podDir (CgroupFile);
// stage0 calls it before it creates the cgroup.
func RecordCgroup(podDir, cgroup string) error {
	if err := os.MkdirAll(filepath.Join(podDir, StateDir), 0o755); err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(podDir, CgroupFile), []byte(cgroup+"\n"))
}

// WriteCgroups records the pod's cgroup files for stage1 (stage0 calls
// it once it has made the cgroups).
func WriteCgroups(podDir string, cg Cgroups) error {
	return WriteJSONAtomic(filepath.Join(podDir, CgroupsFile), cg)
}

// On cgroup v2 an app starts through the exec shim inside its cgroup: a
// Go program of up to 5 threads and a few MiB for a moment before it
// becomes the app, which the app's limits must leave room for.
const (
	minV2PidsLimit   = 8
	minV2MemoryBytes = 16 << 20
)

// CheckV2Limits refuses limits the exec shim cannot start under on a
// cgroup v2 host; stage0 calls it before it makes a pod's cgroups there.
func CheckV2Limits(apps []App) error {
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
