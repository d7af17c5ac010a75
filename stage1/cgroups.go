package stage1

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
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
	// V2 says the host is cgroup v2 only: apps are forked into their
	// cgroup with clone3 (AppCgroup.Dir) instead of joining it by thread.
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
	s.setCgroups(cg)
	return nil
}

func (s *supervisor) setCgroups(cg Cgroups) {
	s.cgroups, s.cgroupV2, s.initCgroup = cg.Apps, cg.V2, cg.Init
}

// joinInitCgroup moves the calling thread, which must be locked to its
// goroutine, into the pod's own cgroup of the v1 cpu hierarchies, whose
// "tasks" files are tasks (Cgroups.Init). The supervisor's thread that
// forks the init joins it first, so that the init starts there, with
// every thread it makes. Writing "0"
// to "tasks" moves the calling thread without the kernel's global
// threadgroup lock: moving a whole process (cgroup.procs) takes it, and
// its write side waits for an RCU grace period (0.1 to 2.6 ms here)
// while every fork on the host waits for it.
func joinInitCgroup(tasks []string) error {
	for _, name := range tasks {
		if err := os.WriteFile(name, []byte("0"), 0); err != nil {
			return fmt.Errorf("joining the pod's cgroup: %w", err)
		}
	}
	return nil
}

// openTasks opens for the init what it starts each app into, in the
// order of the pod's apps, so that the app starts inside its cgroup and
// never runs a moment outside it: on v1 and hybrid hosts the app's
// "tasks" files (the thread that forks the app writes "0" there first),
// on v2 the app's cgroup directory (the app is forked into it with
// clone3, see execshim.go).
func (s *supervisor) openTasks() ([][]*os.File, error) {
	if s.cgroups == nil {
		return nil, nil
	}
	tasks := make([][]*os.File, len(s.pod.Apps))
	for i, a := range s.pod.Apps {
		if s.cgroupV2 {
			d, err := openPlain(s.cgroups[a.Name].Dir, unix.O_RDONLY|unix.O_DIRECTORY)
			if err != nil {
				return tasks, fmt.Errorf("app %s: its cgroup: %w", a.Name, err)
			}
			tasks[i] = []*os.File{d}
			continue
		}
		for _, name := range s.cgroups[a.Name].Tasks {
			t, err := openPlain(name, unix.O_WRONLY)
			if err != nil {
				return tasks, fmt.Errorf("app %s: joining its cgroup: %w", a.Name, err)
			}
			tasks[i] = append(tasks[i], t)
		}
	}
	return tasks, nil
}

// openPlain opens a file only to pass its descriptor on. os.OpenFile
// would register a cgroup file, which the kernel lets poll, with the
// runtime's poller and make it non-blocking, then undo both when the
// descriptor is passed and closed: six system calls more per file, for
// every app's every hierarchy on a pod's start.
func openPlain(name string, flags int) (*os.File, error) {
	fd, err := unix.Open(name, flags|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
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
