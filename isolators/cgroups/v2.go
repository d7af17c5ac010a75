package cgroups

// cgroup v2 (unified hosts), on containerd's cgroup2.

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
	"time"

	"github.com/containerd/cgroups/v3/cgroup2"
	"golang.org/x/sys/unix"
)

const v2DefaultMount = "/sys/fs/cgroup"

// v2Controllers are enabled (when the host has them) from the root down to every pod, so
// that apps can be limited and accounted.
var v2Controllers = []string{"cpu", "memory", "pids"}

// makeV2 creates cgroup cg (a pod, or the pods' parent) with the controllers enabled from the
// root down to it.
func makeV2(mount, cg string) error {
	if err := cgroup2.VerifyGroupPath(cg); err != nil {
		return fmt.Errorf("cgroups: %s: %w", cg, err)
	}
	if err := os.MkdirAll(filepath.Join(mount, cg), 0o755); err != nil {
		return fmt.Errorf("cgroups: create %s: %w", cg, err)
	}
	return enableV2(mount, cg)
}

// enableV2 writes "+cpu +memory +pids" (what each level has and lacks) to the
// cgroup.subtree_control of every level from the root down to cg itself. containerd's
// ToggleControllers writes one fixed list and reports only the last level's error, so this
// is done here.
func enableV2(mount, cg string) error {
	for _, lvl := range cgroupLevels(cg) {
		d := filepath.Join(mount, lvl)
		avail, err := os.ReadFile(filepath.Join(d, "cgroup.controllers"))
		if err != nil {
			return fmt.Errorf("cgroups: %w", err)
		}
		cur, err := os.ReadFile(filepath.Join(d, "cgroup.subtree_control"))
		if err != nil {
			return fmt.Errorf("cgroups: %w", err)
		}
		line := subtreeEnableLine(v2Controllers, string(avail), string(cur))
		if line == "" {
			continue
		}
		err = writeExisting(filepath.Join(d, "cgroup.subtree_control"), line)
		if errors.Is(err, unix.EBUSY) && lvl != "/" {
			var moved bool
			if moved, err = moveSelfOut(d, lvl, "/proc/self/cgroup"); moved && err == nil {
				err = writeExisting(filepath.Join(d, "cgroup.subtree_control"), line)
			} else if err == nil {
				err = unix.EBUSY
			}
		}
		if err != nil {
			hint := ""
			if errors.Is(err, unix.EBUSY) {
				hint = " (cgroup v2 refuses to enable controllers in a non-root cgroup that holds processes: run karman in a leaf of a delegated cgroup, e.g. a systemd unit with Delegate=yes)"
			}
			return fmt.Errorf("cgroups: enable %q in %s: %w%s", line, lvl, err, hint)
		}
	}
	return nil
}

// moveSelfOut handles the systemd case on v2: the pods' parent is "<own>/karman-pods", and
// <own> cannot enable controllers while the caller is in it. When lvl is the caller's own
// cgroup and holds no other process, the caller moves itself to the leaf
// "<own>/karman-self" and reports true.
func moveSelfOut(dir, lvl, procSelfCgroup string) (bool, error) {
	b, err := os.ReadFile(procSelfCgroup)
	if err != nil {
		return false, nil
	}
	entries, err := parseProcCgroup(string(b))
	if err != nil {
		return false, nil
	}
	own, _ := ownV2Cgroup(entries)
	procs, err := readPids(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return false, nil
	}
	if !shouldMoveSelf(lvl, own, procs, os.Getpid()) {
		return false, nil
	}
	leaf := filepath.Join(dir, selfLeaf)
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return false, fmt.Errorf("cgroups: create %s: %w", leaf, err)
	}
	if err := writeExisting(filepath.Join(leaf, "cgroup.procs"), strconv.Itoa(os.Getpid())); err != nil {
		return false, fmt.Errorf("cgroups: move self to %s: %w", leaf, err)
	}
	return true, nil
}

// shouldMoveSelf: the busy cgroup lvl is the caller's own v2 cgroup and only the caller is in it.
func shouldMoveSelf(lvl, own string, procs []int, self int) bool {
	if own == "" || cleanCgroupPath(own) != cleanCgroupPath(lvl) || cleanCgroupPath(lvl) == "/" {
		return false
	}
	for _, p := range procs {
		if p != self {
			return false
		}
	}
	return true
}

func addAppV2(h host, podPath, name string, r Resources) (*App, error) {
	mount := h.v2Mount
	if err := checkV2Controllers(mount, r); err != nil {
		return nil, err
	}
	res, err := v2Resources(r)
	if err != nil {
		return nil, err
	}
	// Idempotent: makes sure the pod exists with its controllers enabled.
	if err := makeV2(mount, podPath); err != nil {
		return nil, err
	}
	pm, err := cgroup2.Load(podPath, cgroup2.WithMountpoint(mount))
	if err != nil {
		return nil, fmt.Errorf("cgroups: pod %s: %w", podPath, err)
	}
	m, err := pm.NewChild(name, res)
	appPath := path.Join(podPath, name)
	if err != nil {
		return nil, fmt.Errorf("cgroups: create app %s: %w", appPath, err)
	}
	dir := filepath.Join(mount, appPath)
	if h.devices != nil {
		if err := h.devices(dir, deviceRules(r)); err != nil {
			return nil, fmt.Errorf("cgroups: device allowlist of app %s: %w", appPath, err)
		}
	}
	return &App{path: appPath, v2: m, v2Dir: dir}, nil
}

// checkV2Controllers refuses the limits of r whose controller the hierarchy at mount lacks
// (the cgroup2 hierarchy of a hybrid host, whose controllers are bound to v1), before any
// file is written: containerd would fail on the first missing limit file, naming only it.
func checkV2Controllers(mount string, r Resources) error {
	b, err := os.ReadFile(filepath.Join(mount, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("cgroups: %w", err)
	}
	have := strings.Fields(string(b))
	var refused, missing []string
	for _, l := range []struct {
		set        bool
		flag, ctrl string
	}{
		{r.MemoryBytes != 0, "--memory", "memory"},
		{r.CPUMillis != 0, "--cpu", "cpu"},
		{r.CPUShares != 0, "--cpu-shares", "cpu"},
		{r.PidsLimit != 0, "--pids-limit", "pids"},
	} {
		if l.set && !slices.Contains(have, l.ctrl) {
			refused = append(refused, l.flag)
			if !slices.Contains(missing, l.ctrl) {
				missing = append(missing, l.ctrl)
			}
		}
	}
	if len(refused) == 0 {
		return nil
	}
	return fmt.Errorf("cgroups: %s refused: %w (%s) at %s, which has %q (on a hybrid host the controllers are bound to the v1 hierarchies): drop the limit or use --cgroup-hierarchy=auto",
		strings.Join(refused, ", "), ErrNoController, strings.Join(missing, ", "), mount, strings.TrimSpace(string(b)))
}

func openAppV2(mount, podPath, name string) (*App, error) {
	appPath := path.Join(podPath, name)
	dir := filepath.Join(mount, appPath)
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("cgroups: app %s: %w", appPath, err)
	}
	m, err := cgroup2.Load(appPath, cgroup2.WithMountpoint(mount))
	if err != nil {
		return nil, fmt.Errorf("cgroups: open app %s: %w", appPath, err)
	}
	return &App{path: appPath, v2: m, v2Dir: dir}, nil
}

func statsV2(a *App) (Stats, error) {
	m, err := a.v2.StatFiltered(cgroup2.StatPids | cgroup2.StatCPU | cgroup2.StatMemory | cgroup2.StatMemoryEvents)
	if err != nil {
		return Stats{}, fmt.Errorf("cgroups: stats %s: %w", a.path, err)
	}
	return statsFromV2(m), nil
}

func deletePodV2(mount, podPath string) error {
	dir := filepath.Join(mount, podPath)
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	m, err := cgroup2.Load(podPath, cgroup2.WithMountpoint(mount))
	if err != nil {
		return fmt.Errorf("cgroups: delete pod %s: %w", podPath, err)
	}
	deadline := time.Now().Add(killTimeout)
	delay := 5 * time.Millisecond
	for {
		procs, err := m.Procs(true)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("cgroups: list processes of %s: %w", podPath, err)
		}
		if len(procs) == 0 {
			break
		}
		// cgroup.kill (kernel 5.14+) kills the whole subtree atomically; repeating it is harmless.
		if err := m.Kill(); err != nil {
			return fmt.Errorf("cgroups: kill %s: %w", podPath, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroups: processes %v of %s still alive after SIGKILL", procs, podPath)
		}
		time.Sleep(delay)
		if delay < 200*time.Millisecond {
			delay *= 2
		}
	}
	// Removes the app children, then the pod (rmdir, recursively).
	if err := m.Delete(); err != nil {
		return fmt.Errorf("cgroups: delete pod %s: %w", podPath, err)
	}
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("cgroups: delete pod %s: still present", podPath)
	}
	return nil
}

// writeExisting writes to an existing (cgroup) file without creating it.
func writeExisting(name, data string) error {
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func readPids(name string) ([]int, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			out = append(out, p)
		}
	}
	return out, nil
}
