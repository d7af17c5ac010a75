package poddir

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/karman-project/karman/internal/atomicfile"
	"github.com/karman-project/karman/isolators"
)

// InterfaceVersion is the version of the stage0 -> stage1 contract: the
// pod.json schema, the pod directory layout and the stage1 command line.
// stage1 refuses a pod written for another version. Version 2: one
// supervisor command line (no --init, --booted or --resumed), the init
// always forked by the supervisor (no setup message). Version 3: mutable
// pods (Pod.KeepAlive, a pod of no apps, the app requests on the control
// socket and the log pipes the init asks the supervisor for). Version 4:
// App.OwnPIDNamespace. Version 5: Pod.HostPID and HostIPC, App.NewPrivs,
// Privileged, Paths, Devices and Mount.Propagation. Version 6: App.Stdin,
// StdinOnce and TTY, the attach socket (AttachSocket), and the stdin and
// terminal of the init's pipes request.
const InterfaceVersion = 6

// Pod is pod.json: everything stage1 needs to run a pod, written by stage0
// into the pod directory before stage1 starts.
type Pod struct {
	Version  int    `json:"version"`
	UUID     string `json:"uuid"`
	Name     string `json:"name"`
	Hostname string `json:"hostname"`
	// Net is "none" (a network namespace with only loopback), "host", or
	// the networks stage0 attached the pod to (for information; then
	// NetNS is set).
	Net string `json:"net"`
	// NetNS, when set, is a network namespace stage0 made and configured
	// (a bind-mounted nsfs file): the pod joins it instead of getting a
	// new one. When the pod has ended, the supervisor unmounts and removes
	// it unless Teardown is set.
	NetNS string `json:"netns,omitempty"`
	// Teardown, when set, is a command the supervisor runs once the pod
	// has ended and before it releases the pod lock, with the pod
	// directory appended: stage0's undoing of what it made for the pod
	// outside of it that removing NetNS does not undo (port forwards, CNI
	// DEL), NetNS included. Its failure is logged; gc retries.
	Teardown []string `json:"teardown,omitempty"`
	// ResolvConf and Hosts are written to each app's /etc/resolv.conf and
	// /etc/hosts; Hostname to /etc/hostname.
	ResolvConf string `json:"resolvConf"`
	Hosts      string `json:"hosts"`
	// StopTimeout is how long apps get between SIGTERM and SIGKILL.
	StopTimeout time.Duration `json:"stopTimeout"`
	// Interactive gives the (single) app the caller's terminal.
	Interactive bool `json:"interactive,omitempty"`
	// Sysctls are set in the pod's namespaces before any app starts; only
	// namespaced ones (see isolators.CheckSysctl).
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// NotifyApp hands NOTIFY_SOCKET to the app instead of karman sending
	// READY=1 itself once the apps have started.
	NotifyApp bool `json:"notifyApp,omitempty"`
	// KeepAlive keeps the pod running until it is stopped, not until its
	// last app has ended; a pod of no apps (karman run --no-apps) has it.
	KeepAlive bool `json:"keepAlive,omitempty"`
	// HostPID and HostIPC run the pod in the host's PID and IPC
	// namespaces instead of its own (CRI's NamespaceMode NODE).
	HostPID bool  `json:"hostPid,omitempty"`
	HostIPC bool  `json:"hostIpc,omitempty"`
	Apps    []App `json:"apps"`
}

// App is one application of a pod.
type App struct {
	Name        string `json:"name"`
	Image       string `json:"image"`
	ImageDigest string `json:"imageDigest"`
	// Dir is the app's rendering directory, relative to the pod
	// directory: Dir/rootfs is its root. Layers, when set, are mounted as
	// an overlay on Dir/rootfs (upper Dir/upper, work Dir/work) inside the
	// pod's mount namespace; when empty Dir/rootfs is a ready copy.
	Dir    string   `json:"dir"`
	Layers []string `json:"layers,omitempty"`
	// Args is the command: Args[0] is an absolute path or a name looked up
	// in the app's PATH inside its rootfs.
	Args       []string `json:"args"`
	Env        []string `json:"env"`
	WorkingDir string   `json:"workingDir"`
	UID        uint32   `json:"uid"`
	GID        uint32   `json:"gid"`
	GIDs       []uint32 `json:"additionalGids,omitempty"`
	Mounts     []Mount  `json:"mounts,omitempty"`
	// Resources limit the app through its cgroup; zero values: no limit.
	Resources Resources `json:"resources,omitzero"`
	// Caps is the app's capability bounding set (names without CAP_); nil
	// (null) means the default set (isolators.DefaultCaps), empty means
	// none, AllCaps keeps all. Not omitempty: an empty set must not come
	// back as nil, the default.
	Caps    []string `json:"caps"`
	AllCaps bool     `json:"allCaps,omitempty"`
	// Unconfined runs the app without any seccomp filter
	// (--insecure-options=seccomp).
	Unconfined bool `json:"unconfined,omitempty"`
	// Seccomp is the app's own filter (--seccomp); nil is the default
	// filter.
	Seccomp *isolators.Seccomp `json:"seccomp,omitempty"`
	// NoMasks leaves /proc and /sys unmasked and writable.
	NoMasks        bool `json:"noMasks,omitempty"`
	ReadonlyRootfs bool `json:"readonlyRootfs,omitempty"`
	// OOMScoreAdj, when set, is written for the app's process.
	OOMScoreAdj *int `json:"oomScoreAdj,omitempty"`
	// OwnPIDNamespace starts the app in a PID namespace of its own, whose
	// PID 1 it is, with a /proc of that namespace (--pid=app; CRI's
	// NamespaceMode CONTAINER); false shares the pod's (--pid=pod).
	OwnPIDNamespace bool `json:"ownPidNamespace,omitempty"`
	// NewPrivs leaves no_new_privs off, so that setuid programs and file
	// capabilities raise the app's privileges within its bounding set
	// (CRI's no_new_privs false); the default sets it.
	NewPrivs bool `json:"newPrivs,omitempty"`
	// Privileged gives the app a writable /sys and access to every
	// device (the device cgroup allows all; Devices lists the host's).
	// stage0 sets AllCaps, Unconfined and NoMasks with it.
	Privileged bool `json:"privileged,omitempty"`
	// Paths, when set, replace the default masked and read-only paths
	// of /proc and /sys; nil keeps the defaults.
	Paths *PathRules `json:"paths,omitempty"`
	// Devices are device nodes made in the app's /dev, and allowed by
	// its device cgroup.
	Devices []Device `json:"devices,omitempty"`
	// Stdin keeps a pipe open as the app's stdin, which attach clients
	// write to (state/attach.sock); StdinOnce closes it when the first
	// attach session's stdin ends. TTY gives the app a pseudo-terminal
	// as stdin, stdout and stderr, relayed by the supervisor (its output
	// is logged as stdout). Apps added to a running pod only.
	Stdin     bool `json:"stdin,omitempty"`
	StdinOnce bool `json:"stdinOnce,omitempty"`
	TTY       bool `json:"tty,omitempty"`
}

// PathRules are the paths of an app that are masked (an empty read-only
// directory or /dev/null bound over them) and made read-only.
type PathRules struct {
	Masked   []string `json:"masked,omitempty"`
	ReadOnly []string `json:"readOnly,omitempty"`
}

// Resources are an app's cgroup limits.
type Resources struct {
	MemoryBytes int64  `json:"memoryBytes,omitempty"`
	CPUMillis   int64  `json:"cpuMillis,omitempty"`
	CPUShares   uint64 `json:"cpuShares,omitempty"`
	PidsLimit   int64  `json:"pidsLimit,omitempty"`
}

// Mount is a host path bind-mounted into an app (see volume.go). With
// SourceRoot set, Source lies beneath it and is resolved there without
// ever leaving it: no symlink or ".." below SourceRoot may lead out (the
// agent sets it to the --volume-dir a task's volume is under). Target is
// resolved inside the app's root and must not be a path the runtime
// mounts itself (CheckMountTarget).
type Mount struct {
	Source     string `json:"source"`
	Target     string `json:"target"`
	ReadOnly   bool   `json:"readOnly,omitempty"`
	SourceRoot string `json:"sourceRoot,omitempty"`
	// Propagation is PropagationPrivate (or empty), PropagationSlave
	// (mounts made on the host below the source appear in the app) or
	// PropagationShared (and the app's mounts there appear on the host).
	Propagation string `json:"propagation,omitempty"`
	// NonRecursive makes a ReadOnly volume read-only on its own mount
	// only: mounts below its source keep their modes (CRI's readonly
	// without recursive_read_only). (A stage1 of before it makes the
	// volume read-only recursively: stricter, never looser.)
	NonRecursive bool `json:"nonRecursive,omitempty"`
}

// AppStatus is what stage1 records about an app in
// <pod>/state/apps/<name>.json, updated as the app starts and exits.
type AppStatus struct {
	Name     string    `json:"name"`
	PID      int       `json:"pid,omitempty"` // in the host's PID namespace
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	Exited   bool      `json:"exited"`
	ExitCode int       `json:"exitCode"`
	Signal   string    `json:"signal,omitempty"`
	Reason   string    `json:"reason,omitempty"` // e.g. "not found", "oom-killed"
	// Restarts is how many times the app was started again after it had
	// exited (karman app start).
	Restarts int `json:"restarts,omitempty"`
}

// Paths inside a pod directory.
const (
	PodFile   = "pod.json"
	StateDir  = "state"
	LogsDir   = "logs"
	InitPID   = "state/init.pid" // pod init, host PID namespace
	Started   = "state/started"  // written when every app started
	Finished  = "state/finished" // written when the pod ended
	ExitFile  = "state/exit"     // the pod's exit status
	AppsState = "state/apps"     // one AppStatus per app
)

// Load reads dir/pod.json and checks it, once for every reader: its
// interface version, and what stage1 relies on (Validate).
func Load(dir string) (*Pod, error) {
	b, err := os.ReadFile(filepath.Join(dir, PodFile))
	if err != nil {
		return nil, fmt.Errorf("pod manifest: %w", err)
	}
	var p Pod
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("pod manifest %s: %w", dir, err)
	}
	if p.Version != InterfaceVersion {
		return nil, fmt.Errorf("pod %s was prepared for stage1 interface %d, this karman speaks %d; run it with the karman that prepared it", p.UUID, p.Version, InterfaceVersion)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("pod %s: %w", p.UUID, err)
	}
	return &p, nil
}

// Save writes dir/pod.json atomically, without fsync: a pod that is
// run at once does not outlive a reboot, and stage0 makes a prepared
// pod's pod.json durable when it prepares it (docs/pods.md, "Durability").
func Save(dir string, p *Pod) error {
	p.Version = InterfaceVersion
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, PodFile), b)
}

// ReadAppStatus reads the recorded status of every app of p in dir.
func ReadAppStatus(dir string, p *Pod) []AppStatus {
	out := make([]AppStatus, len(p.Apps))
	for i, a := range p.Apps {
		out[i].Name = a.Name
		if b, err := os.ReadFile(filepath.Join(dir, AppsState, a.Name+".json")); err == nil {
			json.Unmarshal(b, &out[i])
		}
	}
	return out
}

// OwnNet says the pod's init gets a network namespace of its own, with
// only loopback (net=none): not the host's, nor one that stage0 made.
func (p *Pod) OwnNet() bool { return p.Net != "host" && p.NetNS == "" }

// Paths stage1 adds inside a pod directory.
const (
	SupervisorPID = "state/supervisor.pid" // the supervisor, host PID namespace
	CtlSocket     = "state/ctl.sock"       // the init's control socket: enter and stop
	NotifySocket  = "state/notify.sock"    // relay to $NOTIFY_SOCKET when NotifyApp
	// AttachSocket is the supervisor's: attach sessions to the apps'
	// stdio (stage1.Attach).
	AttachSocket = "state/attach.sock"
	// AppNotifySocket is where an app finds that relay, inside its root
	// ($NOTIFY_SOCKET in its environment).
	AppNotifySocket = "/run/notify.sock"
	// PodRoot is an empty directory on the host. Inside the pod's mount
	// namespace the init mounts the pod's root tmpfs on it, mounts each
	// app's rootfs at apps/<name> below it and pivots into it.
	PodRoot = "podroot"
)

// Exit statuses of a pod besides the apps' own.
const (
	ExitRuntimeError = 254 // karman itself failed
	ExitCannotExec   = 126 // the app's command exists but cannot be executed
	ExitNotFound     = 127 // the app's command does not exist
)

// DefaultStopTimeout is used when Pod.StopTimeout is not positive.
const DefaultStopTimeout = 10 * time.Second

// ValidAppName tells whether name may name an app: it names files and
// directories in the pod. Lower-case letters, digits, '.', '_' and '-',
// starting with a letter or digit, at most 63 bytes. (No regexp: package
// initialisation runs in every karman process, the pod init included.)
func ValidAppName(name string) bool {
	if name == "" || len(name) > 63 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// Validate checks what stage1 relies on, for Load: at least one app
// (unless KeepAlive),
// app names usable as file names and unique, a command for every app, no
// network namespace of its own for a pod on the host's network, and a
// single app for an interactive pod. (A prepared pod's networks are made
// when it is run: Runnable says whether they are.)
func (p *Pod) Validate() error {
	if len(p.Apps) == 0 && !p.KeepAlive {
		return errors.New("pod manifest lists no apps, and the pod is not kept alive without them")
	}
	if p.Net == "host" && p.NetNS != "" {
		return errors.New("a pod on the host's network has no network namespace of its own")
	}
	if p.Interactive && len(p.Apps) != 1 {
		return errors.New("an interactive pod has exactly one app")
	}
	seen := map[string]bool{}
	for _, a := range p.Apps {
		if !ValidAppName(a.Name) {
			return fmt.Errorf("app name %q: use lower-case letters, digits, '.', '_' and '-'", a.Name)
		}
		if seen[a.Name] {
			return fmt.Errorf("two apps named %q", a.Name)
		}
		seen[a.Name] = true
		if len(a.Args) == 0 || a.Args[0] == "" {
			return fmt.Errorf("app %s has no command", a.Name)
		}
		if a.Dir == "" || strings.HasPrefix(a.Dir, "/") || strings.Contains("/"+a.Dir+"/", "/../") {
			return fmt.Errorf("app %s: dir %q must be relative to the pod directory", a.Name, a.Dir)
		}
		for _, m := range a.Mounts {
			if err := m.Check(); err != nil {
				return fmt.Errorf("app %s: %w", a.Name, err)
			}
		}
		if err := a.Paths.Check(); err != nil {
			return fmt.Errorf("app %s: %w", a.Name, err)
		}
		for _, d := range a.Devices {
			if err := d.Check(); err != nil {
				return fmt.Errorf("app %s: %w", a.Name, err)
			}
		}
	}
	return nil
}

// Runnable refuses to run a pod whose networks stage0 has not made (a
// prepared pod not run through stage0): stage1 runs pods with net none,
// host, or in the network namespace stage0 made (NetNS).
func (p *Pod) Runnable() error {
	switch {
	case p.Net == "", p.Net == "none", p.Net == "host", p.NetNS != "":
		return nil
	}
	return fmt.Errorf("pod %s: network %q is not made: stage1 runs pods with net none, host, or in a network namespace stage0 made; run it with `karman run-prepared`", p.UUID, p.Net)
}

// WriteFileAtomic replaces path with data, atomically but without
// fsync: the pod directory's state files describe processes and cgroups
// that a power loss ends anyway (docs/pods.md, "Durability").
func WriteFileAtomic(path string, data []byte) error {
	return atomicfile.WriteFileNoSync(path, data, 0o644)
}

// WriteJSONAtomic replaces path with v as JSON, as WriteFileAtomic.
func WriteJSONAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, append(b, '\n'))
}

// ReadJSON reads the JSON file path into v.
func ReadJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
