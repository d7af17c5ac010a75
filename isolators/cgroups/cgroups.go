package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// Resources of one app (zero values mean "no limit"). The lead fills it from CLI flags.
type Resources struct {
	MemoryBytes int64  // --memory
	CPUMillis   int64  // --cpu, in millicores: quota = millis*period/1000 with period 100000us
	CPUShares   uint64 // --cpu-shares (v1 shares; on v2 converted to weight)
	PidsLimit   int64  // --pids-limit
	// Devices are allowed beyond DeviceAllowlist (an app's devices, or
	// every device for a privileged one).
	Devices []specs.LinuxDeviceCgroup
}

// Stats of one app's cgroup. Memory in bytes, times in nanoseconds.
type Stats struct {
	MemoryCurrent, MemoryPeak, CPUUsageNs, ThrottledPeriods, ThrottledNs uint64
	Pids                                                                 uint64
	OOMKills                                                             uint64
}

// ErrThreadJoin is returned by JoinThread on cgroup v2, where a single thread of a
// process cannot be moved into a domain cgroup: use FD with SysProcAttr.UseCgroupFD.
var ErrThreadJoin = errors.New("cgroups: cgroup v2 cannot move a single thread into a cgroup; start the process with FD() and SysProcAttr.UseCgroupFD")

// ErrMainThread is returned by JoinThread for the process's main thread (see JoinThread).
var ErrMainThread = errors.New("cgroups: refusing to move the main thread into an app cgroup (it is never discarded, so the whole process would stay in the pod): call runtime.LockOSThread first in main so goroutines that join run on other threads")

// ErrUnavailable is returned when no cgroup file system is mounted.
var ErrUnavailable = errors.New("cgroups: no cgroup file system mounted at /sys/fs/cgroup")

// Mode reports "v1", "hybrid" or "v2" (unified) for this host ("unavailable" when no cgroup
// file system is mounted).
func Mode() string { return modeString(cgroups.Mode()) }

// Hierarchy is the cgroup hierarchy karman drives pods through (--cgroup-hierarchy):
//   - Auto ("auto", or ""): cgroup v2 on a unified host, v1 on legacy and hybrid hosts;
//   - V1 ("v1"): the v1 hierarchies, refused on a unified host (which has none);
//   - Unified ("unified"): the cgroup2 hierarchy, also on a hybrid host
//     (/sys/fs/cgroup/unified), as a systemd host that delegates there may want. There it
//     usually holds no resource controller (they are bound to the v1 hierarchies): AddApp
//     refuses limits whose controller it lacks (ErrNoController).
type Hierarchy string

const (
	Auto    Hierarchy = "auto"
	V1      Hierarchy = "v1"
	Unified Hierarchy = "unified"
)

// ParseHierarchy reads a --cgroup-hierarchy value.
func ParseHierarchy(s string) (Hierarchy, error) {
	switch h := Hierarchy(s); h {
	case Auto, V1, Unified:
		return h, nil
	}
	return "", fmt.Errorf("--cgroup-hierarchy %q refused: no such hierarchy; use auto, v1 or unified", s)
}

// V2 reports whether h drives pods through cgroup v2 on this host, or why h cannot be used here.
func (h Hierarchy) V2() (bool, error) {
	hh, err := hostFor(h)
	return hh.v2, err
}

// ErrNoController is returned (wrapped) by AddApp for a limit whose controller the cgroup2
// hierarchy lacks.
var ErrNoController = errors.New("the cgroup2 hierarchy lacks the controller")

const hybridUnifiedMount = "/sys/fs/cgroup/unified"

func modeString(m cgroups.CGMode) string {
	switch m {
	case cgroups.Legacy:
		return "v1"
	case cgroups.Hybrid:
		return "hybrid"
	case cgroups.Unified:
		return "v2"
	default:
		return "unavailable"
	}
}

// host is the backend chosen for this process: v1 (legacy and hybrid) or v2 at a mount point.
type host struct {
	v2      bool
	v2Mount string // v2 only
	// devices attaches the device allowlist to a v2 app cgroup directory
	// (attachDeviceFilter, an eBPF program; fake trees record instead).
	devices func(dir string, rules []specs.LinuxDeviceCgroup) error
}

// hostOverride lets tests drive the v2 code with a fake tree in a temporary directory.
var hostOverride *host

// hostFor is the backend for hierarchy h on this host.
func hostFor(h Hierarchy) (host, error) {
	if hostOverride != nil {
		return *hostOverride, nil
	}
	return hostForMode(cgroups.Mode(), h)
}

// hostForMode is hostFor on a host of mode m.
func hostForMode(m cgroups.CGMode, h Hierarchy) (host, error) {
	if _, err := ParseHierarchy(string(h)); err != nil && h != "" {
		return host{}, fmt.Errorf("cgroups: %w", err)
	}
	switch {
	case m == cgroups.Unavailable:
		return host{}, ErrUnavailable
	case m == cgroups.Unified && h == V1:
		return host{}, errors.New("cgroups: --cgroup-hierarchy=v1 refused: this host has only the cgroup2 hierarchy (unified); use --cgroup-hierarchy=auto or unified")
	case m == cgroups.Legacy && h == Unified:
		return host{}, errors.New("cgroups: --cgroup-hierarchy=unified refused: this host has no cgroup2 hierarchy (cgroup v1 only); use --cgroup-hierarchy=auto or v1")
	case m == cgroups.Unified:
		return host{v2: true, v2Mount: v2DefaultMount, devices: attachDeviceFilter}, nil
	case m == cgroups.Hybrid && h == Unified:
		return host{v2: true, v2Mount: hybridUnifiedMount, devices: attachDeviceFilter}, nil
	default:
		return host{}, nil
	}
}

// Parent is the cgroup path (relative, like "/karman") under which pods are created: under
// systemd (PID 1 is systemd and the caller's own cgroup, the name=systemd or the v2 entry of
// /proc/self/cgroup, is not "/") pods land inside the caller's own cgroup (the unit's
// delegated cgroup) as "<own>/karman-pods"; elsewhere under "/karman".
func Parent() (string, error) {
	return parentFromFiles("/proc/self/cgroup", "/run/systemd/system")
}

// parentFromFiles is Parent reading the process's cgroup file and
// testing systemd's runtime directory at the given paths.
func parentFromFiles(procSelfCgroup, systemdDir string) (string, error) {
	b, err := os.ReadFile(procSelfCgroup)
	if err != nil {
		return "", fmt.Errorf("cgroups: %w", err)
	}
	fi, err := os.Stat(systemdDir)
	return parentFor(string(b), err == nil && fi.IsDir())
}

// PrepareParent readies parent to hold pods. On v2 it creates it and enables cpu, memory and
// pids from the root down to it. Under systemd that passes through the caller's unit, whose
// cgroup can only hand controllers down while no process is in it: the caller, alone there,
// moves itself into "<unit>/karman-self" (see NewPod). So a caller that starts other
// processes in its own cgroup (the pod init) calls PrepareParent before. On v1 it does
// nothing: NewPod makes what is missing.
func PrepareParent(hier Hierarchy, parent string) error {
	h, err := hostFor(hier)
	if err != nil || !h.v2 {
		return err
	}
	return makeV2(h.v2Mount, cleanCgroupPath(parent))
}

// Pod is a pod's cgroup: <parent>/<uuid>, with one child per app.
type Pod struct {
	Path      string    // e.g. /karman/<uuid>
	Hierarchy Hierarchy // the one it was made in (AddApp); Delete looks in every one
}

// OpenPod returns the pod at path in hierarchy h (it may or may not exist; Delete is
// idempotent).
func OpenPod(h Hierarchy, p string) *Pod {
	return &Pod{Path: cleanCgroupPath(p), Hierarchy: h}
}

// NewPod creates the pod's cgroup <parent>/<uuid>: in every v1 controller hierarchy that
// exists, or the v2 group with cpu, memory and pids (those the host has) enabled in
// cgroup.subtree_control from the root down to the pod itself. Creating an existing one is fine.
func NewPod(hier Hierarchy, parent, uuid string) (*Pod, error) {
	if err := validName("pod", uuid); err != nil {
		return nil, err
	}
	h, err := hostFor(hier)
	if err != nil {
		return nil, err
	}
	p := &Pod{Path: path.Join(cleanCgroupPath(parent), uuid), Hierarchy: hier}
	if h.v2 {
		err = makeV2(h.v2Mount, p.Path)
	} else {
		err = newPodV1(p.Path)
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// App is one app's cgroup, a child of its pod's.
type App struct {
	path  string
	v1    cgroup1.Cgroup   // v1 and hybrid
	v2    *cgroup2.Manager // v2
	v2Dir string           // v2: absolute directory
}

// AddApp creates the app's child cgroup <pod>/<name> with the resources applied and returns
// it. Adding an existing app applies the non-zero resources again.
func (p *Pod) AddApp(name string, r Resources) (*App, error) {
	if err := validName("app", name); err != nil {
		return nil, err
	}
	h, err := hostFor(p.Hierarchy)
	if err != nil {
		return nil, err
	}
	podPath := cleanCgroupPath(p.Path)
	if h.v2 {
		return addAppV2(h, podPath, name, r)
	}
	return addAppV1(podPath, name, r)
}

// OpenApp reopens an existing app cgroup by pod path and name (for `karman status` in another
// process), in hierarchy hier.
func OpenApp(hier Hierarchy, podPath, name string) (*App, error) {
	if err := validName("app", name); err != nil {
		return nil, err
	}
	h, err := hostFor(hier)
	if err != nil {
		return nil, err
	}
	podPath = cleanCgroupPath(podPath)
	if h.v2 {
		return openAppV2(h.v2Mount, podPath, name)
	}
	return openAppV1(podPath, name)
}

// Path of the app's cgroup (same relative path in every v1 hierarchy / in v2).
func (a *App) Path() string { return a.path }

// JoinThread moves the thread tid (v1: its TID is written to "tasks" of every controller
// hierarchy). Children the thread forks afterwards start inside the app's cgroup. A thread
// moved this way should not go back to running other goroutines: lock it with
// runtime.LockOSThread and let the goroutine exit without unlocking, so the runtime ends it.
//
// The main thread (tid == getpid()) is refused with ErrMainThread: Go never ends it, so the
// whole process would stay in the pod (and Delete would find it there). A program using this
// pattern calls runtime.LockOSThread first in main, which keeps the main goroutine on the
// main thread and every other goroutine off it. On v2 it returns ErrThreadJoin.
func (a *App) JoinThread(tid int) error {
	if a.v1 == nil {
		return ErrThreadJoin
	}
	if tid <= 0 {
		return fmt.Errorf("cgroups: invalid tid %d", tid)
	}
	if tid == os.Getpid() {
		return ErrMainThread
	}
	if err := a.v1.AddTask(cgroup1.Process{Pid: tid}); err != nil {
		return fmt.Errorf("cgroups: join %s: %w", a.path, err)
	}
	return nil
}

// FD opens the v2 cgroup directory (O_RDONLY|O_DIRECTORY|O_CLOEXEC, which clone3 accepts) so
// a process can be started directly in it with syscall.SysProcAttr{UseCgroupFD: true,
// CgroupFD: fd}. The caller closes it. On v1 it returns -1, nil.
func (a *App) FD() (int, error) {
	if a.v2 == nil {
		return -1, nil
	}
	return openDirFD(a.v2Dir)
}

// Stats reads the app's usage counters.
func (a *App) Stats() (Stats, error) {
	if a.v2 != nil {
		return statsV2(a)
	}
	return statsV1(a)
}

// Delete removes the app cgroups and the pod cgroup (v1: in every hierarchy). Processes still
// inside are killed with SIGKILL first (v2: cgroup.kill; v1: the PIDs in cgroup.procs, each
// checked to be a member through a pidfd before it is signalled, retried briefly), then the
// directories are removed. Deleting a missing pod is fine. The parent ("/karman") is kept.
// Whatever p.Hierarchy says, a hybrid host's pod is looked for in its v1 hierarchies and in
// its cgroup2 one, so gc removes a pod made under another --cgroup-hierarchy.
func (p *Pod) Delete() error {
	h, err := hostFor(Auto)
	if err != nil {
		return err
	}
	podPath := cleanCgroupPath(p.Path)
	if podPath == "/" {
		return errors.New("cgroups: refusing to delete the root cgroup")
	}
	if h.v2 {
		return deletePodV2(h.v2Mount, podPath)
	}
	err = deletePodV1(podPath)
	if cgroups.Mode() == cgroups.Hybrid {
		// A pod made with --cgroup-hierarchy=unified lives in the cgroup2 hierarchy.
		err = errors.Join(err, deletePodV2(hybridUnifiedMount, podPath))
	}
	return err
}
