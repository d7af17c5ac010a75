package cgroups

// cgroup v1 (legacy and hybrid hosts), on containerd's cgroup1.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// killTimeout bounds how long Delete keeps killing and waiting for processes.
const killTimeout = 5 * time.Second

type pather interface {
	Path(string) string
}

// v1Hierarchy is cgroup1.Default (every controller hierarchy mounted next to the first v1
// mount, without the cgroup2 "unified" mount) minus the named "systemd" hierarchy, which is
// no controller: under systemd the processes stay in the caller's unit there, which is what
// systemd tracks. The memory controller ignores memsw/kmem files the kernel does not have, so
// that Stat works without swap accounting or kmem.
func v1Hierarchy() ([]cgroup1.Subsystem, error) {
	return v1HierarchyOnce()
}

// podControllers are the v1 controllers a pod gets cgroups in: those its
// limits, accounting and device rules use. Creating a cgroup costs time in
// every hierarchy (cpuset most), and it sits on every pod's start path.
var podControllers = map[cgroup1.Name]bool{
	cgroup1.Cpu: true, cgroup1.Cpuacct: true, cgroup1.Memory: true, cgroup1.Pids: true, cgroup1.Devices: true,
}

var v1HierarchyOnce = sync.OnceValues(v1HierarchyAll)

func v1HierarchyAll() ([]cgroup1.Subsystem, error) {
	subs, err := cgroup1.Default()
	if err != nil {
		return nil, fmt.Errorf("cgroups: v1 hierarchies: %w", err)
	}
	var out []cgroup1.Subsystem
	for _, s := range subs {
		if !podControllers[s.Name()] {
			continue
		}
		switch s.Name() {
		case cgroup1.Memory:
			p, ok := s.(pather)
			if !ok {
				break
			}
			memRoot := p.Path("/")
			var missing []string
			for _, mod := range []string{"memsw", "kmem", "kmem.tcp"} {
				if _, err := os.Stat(filepath.Join(memRoot, "memory."+mod+".usage_in_bytes")); err != nil {
					missing = append(missing, mod)
				}
			}
			s = cgroup1.NewMemory(filepath.Dir(memRoot), cgroup1.IgnoreModules(missing...))
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, errors.New("cgroups: no v1 controller hierarchy mounted")
	}
	return out, nil
}

// v1Dirs returns the directory of cgroup p in every hierarchy.
func v1Dirs(subs []cgroup1.Subsystem, p string) []string {
	var dirs []string
	seen := map[string]bool{}
	for _, s := range subs {
		if pp, ok := s.(pather); ok {
			root := pp.Path("/")
			// cpu and cpuacct may be one co-mounted hierarchy behind two symlinks.
			if r, err := filepath.EvalSymlinks(root); err == nil {
				root = r
			}
			d := filepath.Join(root, p)
			if !seen[d] {
				seen[d] = true
				dirs = append(dirs, d)
			}
		}
	}
	return dirs
}

func newPodV1(podPath string) error {
	_, err := cgroup1.New(cgroup1.StaticPath(podPath), &specs.LinuxResources{}, cgroup1.WithHierarchy(v1Hierarchy))
	if err != nil {
		return fmt.Errorf("cgroups: create pod %s: %w", podPath, err)
	}
	return nil
}

func addAppV1(podPath, name string, r Resources) (*App, error) {
	spec, err := toSpec(r)
	if err != nil {
		return nil, err
	}
	appPath := path.Join(podPath, name)
	c, err := cgroup1.New(cgroup1.StaticPath(appPath), spec, cgroup1.WithHierarchy(v1Hierarchy))
	if err != nil {
		return nil, fmt.Errorf("cgroups: create app %s: %w", appPath, err)
	}
	return &App{path: appPath, v1: c}, nil
}

func openAppV1(podPath, name string) (*App, error) {
	appPath := path.Join(podPath, name)
	c, err := cgroup1.Load(cgroup1.StaticPath(appPath), cgroup1.WithHierarchy(v1Hierarchy))
	if err != nil {
		if errors.Is(err, cgroup1.ErrCgroupDeleted) {
			return nil, fmt.Errorf("cgroups: app %s: %w", appPath, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("cgroups: open app %s: %w", appPath, err)
	}
	return &App{path: appPath, v1: c}, nil
}

func statsV1(a *App) (Stats, error) {
	m, err := a.v1.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return Stats{}, fmt.Errorf("cgroups: stats %s: %w", a.path, err)
	}
	return statsFromV1(m), nil
}

func deletePodV1(podPath string) error {
	subs, err := v1Hierarchy()
	if err != nil {
		return err
	}
	var present []string
	for _, d := range v1Dirs(subs, podPath) {
		if _, err := os.Lstat(d); err == nil {
			present = append(present, d)
		}
	}
	if len(present) == 0 {
		return nil
	}
	if err := killV1(present, podPath); err != nil {
		return err
	}
	c, err := cgroup1.Load(cgroup1.StaticPath(podPath), cgroup1.WithHierarchy(func() ([]cgroup1.Subsystem, error) { return subs, nil }))
	if err != nil && !errors.Is(err, cgroup1.ErrCgroupDeleted) {
		return fmt.Errorf("cgroups: delete pod %s: %w", podPath, err)
	}
	if err == nil {
		// Removes the pod with its app children (recursively) in every hierarchy.
		if err := c.Delete(); err != nil {
			return fmt.Errorf("cgroups: delete pod %s: %w", podPath, err)
		}
	}
	var left []string
	for _, d := range present {
		if _, err := os.Lstat(d); err == nil {
			left = append(left, d)
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("cgroups: delete pod %s: still present: %s", podPath, strings.Join(left, ", "))
	}
	return nil
}

// killV1 SIGKILLs the processes in the given cgroup directories (recursively) until none is
// left or killTimeout passes.
func killV1(dirs []string, podPath string) error {
	deadline := time.Now().Add(killTimeout)
	delay := 5 * time.Millisecond
	for {
		pids, err := procsUnder(dirs)
		if err != nil {
			return fmt.Errorf("cgroups: list processes of %s: %w", podPath, err)
		}
		if len(pids) == 0 {
			return nil
		}
		// On v1 cgroup.procs lists a process when any of its threads is inside: a thread of
		// ours that joined an app may still be on its way out. Never signal ourselves.
		self := slices.Contains(pids, os.Getpid())
		for _, pid := range pids {
			if pid == os.Getpid() {
				continue
			}
			if err := killMember(pid, podPath); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			if self {
				return fmt.Errorf("cgroups: the calling process (pid %d) still has a thread in %s", os.Getpid(), podPath)
			}
			return fmt.Errorf("cgroups: processes %v of %s still alive after SIGKILL", pids, podPath)
		}
		time.Sleep(delay)
		if delay < 200*time.Millisecond {
			delay *= 2
		}
	}
}

// procsUnder lists the PIDs in cgroup.procs of the directories and their descendants.
func procsUnder(dirs []string) ([]int, error) {
	seen := map[int]bool{}
	var pids []int
	for _, d := range dirs {
		err := filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if e.IsDir() || e.Name() != "cgroup.procs" {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			for _, f := range strings.Fields(string(b)) {
				pid, err := strconv.Atoi(f)
				if err == nil && pid > 0 && !seen[pid] {
					seen[pid] = true
					pids = append(pids, pid)
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return pids, nil
}

// killMember sends SIGKILL to pid if it is (still) inside cgroup cg. A pidfd pins the process
// while its membership is checked, so a recycled PID is never signalled.
func killMember(pid int, cg string) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil // already gone
		}
		if errors.Is(err, unix.ENOSYS) {
			return killMemberNoPidfd(pid, cg)
		}
		return fmt.Errorf("cgroups: pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(fd)
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil || !inCgroup(string(b), cg) {
		return nil // gone, or not ours
	}
	// If the pidfd's process is still alive, the /proc read above was about it.
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("cgroups: kill %d: %w", pid, err)
	}
	return nil
}

func killMemberNoPidfd(pid int, cg string) error {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil || !inCgroup(string(b), cg) {
		return nil
	}
	if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("cgroups: kill %d: %w", pid, err)
	}
	return nil
}

func openDirFD(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("cgroups: open %s: %w", dir, err)
	}
	return fd, nil
}
