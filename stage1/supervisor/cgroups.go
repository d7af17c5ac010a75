package supervisor

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/karman-project/karman/stage1/poddir"
	"golang.org/x/sys/unix"
)

// loadCgroups reads CgroupsFile; a pod without one has no cgroups.
func (s *supervisor) loadCgroups() error {
	var cg poddir.Cgroups
	if err := poddir.ReadJSON(s.path(poddir.CgroupsFile), &cg); err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("pod cgroups: %w", err)
	}
	s.setCgroups(cg)
	return nil
}

func (s *supervisor) setCgroups(cg poddir.Cgroups) {
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
	if _, ok := s.cgroups[app]; !ok && s.cgroups != nil {
		// An app added to the running pod: stage0 recorded its cgroup
		// since the start.
		var cg poddir.Cgroups
		if poddir.ReadJSON(s.path(poddir.CgroupsFile), &cg) == nil {
			s.cgroups = cg.Apps
		}
	}
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
