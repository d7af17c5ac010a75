package stage0

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/karman-project/karman/isolators"
	"github.com/karman-project/karman/network"
	"github.com/karman-project/karman/stage1/poddir"
)

// AppSpec describes one app of a pod as a user asks for it; what it leaves
// empty comes from the image config.
type AppSpec struct {
	Image string
	// Name defaults to the image's repository base name.
	Name string
	// Exec replaces the image's entrypoint; Args (from `-- ARGS`) replace
	// its cmd.
	Exec       string
	Args       []string
	Env        []string
	User       string // name or uid[:gid], resolved in the image
	WorkingDir string
	Mounts     []poddir.Mount
	Resources  poddir.Resources
	// Isolation beyond the defaults.
	CapsRetain, CapsRemove []string
	ReadonlyRootfs         bool
	OOMScoreAdj            *int
	// PIDNamespace is PIDPod (or empty: the pod's, shared by its apps) or
	// PIDApp (a PID namespace of the app's own, whose PID 1 it is).
	PIDNamespace string
	// Seccomp is the --seccomp value (isolators.ParseSeccomp); empty
	// means the default filter.
	Seccomp string
	// SeccompProfile is the path of a seccomp profile in the OCI JSON
	// format (isolators.ParseSeccompProfile), read when the pod is
	// made; not with Seccomp.
	SeccompProfile string
	// Group, when set, replaces the group that User resolves to: a name
	// of the image's /etc/group or a gid.
	Group string
	// SupplementalGroups are gids the app holds besides its group.
	// GroupsPolicy says whether the image's /etc/group memberships of
	// its user are added to them (GroupsMerge, the default) or not
	// (GroupsStrict).
	SupplementalGroups []uint32
	GroupsPolicy       string
	// NewPrivileges leaves no_new_privs off: setuid programs and file
	// capabilities then raise the app's privileges (within its bounding
	// set). The default sets it.
	NewPrivileges bool
	// Privileged gives the app every capability, no seccomp filter,
	// /proc and /sys unmasked and writable and every host device; it
	// overrides the other isolation options.
	Privileged bool
	// MaskedPaths and ReadonlyPaths, when not nil, replace the default
	// masked and read-only paths of /proc and /sys; empty lists mask
	// nothing.
	MaskedPaths, ReadonlyPaths []string
	// Devices are host device nodes given to the app.
	Devices []DeviceSpec
	// Stdin keeps the app's stdin open for Attach sessions to write to;
	// StdinOnce (which implies Stdin) closes it when the first session's
	// stdin ends; TTY gives the app a pseudo-terminal as its stdio (its
	// output logged as stdout). For apps added to a running pod
	// (AddApp) only: Prepare and Run refuse them.
	Stdin, StdinOnce, TTY bool
}

// DeviceSpec is a host device node given to an app (--device).
type DeviceSpec struct {
	// HostPath is the node on the host; Path where the app has it
	// (default: HostPath), below /dev.
	HostPath, Path string
	// Access is what the app may do with it: a subset of "rwm" (default
	// rwm).
	Access string
}

// PodSpec describes a pod to prepare or run.
type PodSpec struct {
	Apps     []AppSpec
	Name     string
	Hostname string
	// Net is none, host, or networks: default and CNI network names,
	// NAME[:K=V;K=V] joined by commas (network.ParseNet). Empty: default.
	Net string
	// Ports forward host ports to the pod (not with none or host).
	Ports []network.PortMapping
	// DNS sets the pod's /etc/resolv.conf.
	DNS         network.DNS
	PullPolicy  string // new (default), update, never
	NoOverlay   bool
	StopTimeout time.Duration
	Interactive bool
	NotifyApp   bool
	// KeepAlive keeps the pod running until it is stopped, not until its
	// last app has ended. A pod of no apps needs it (karman run
	// --no-apps): apps are added to it later (AddApp).
	KeepAlive bool
	// Insecure options: "http", "tls" for fetching; "image" skips
	// signature verification.
	InsecureHTTP, InsecureTLS, InsecureImage bool
	// "capabilities", "paths", "seccomp" drop the apps' default isolation
	// knowingly: every capability, unmasked /proc and /sys, no filter.
	InsecureCaps, InsecurePaths, InsecureSeccomp bool
	// Sysctls are set in the pod's namespaces (namespaced ones only).
	Sysctls map[string]string
	// Labels are kept with the pod (LabelsFile) and reported by List and
	// Status; the node agent stores its task id in one.
	Labels map[string]string
	// CgroupParent, when set, is the cgroup path (absolute, as
	// /kubepods/burstable/podUID) the pod's cgroup is made under instead
	// of karman's own parent (cgroups.Parent): the CRI's cgroup_parent.
	CgroupParent string
	// HostPID and HostIPC run the pod in the host's PID and IPC
	// namespaces: its apps see (and, with the capabilities, signal) the
	// host's processes, and share its System V IPC and message queues.
	HostPID, HostIPC bool
}

// validAppName accepts DNS labels: 1 to 63 of [a-z0-9-], not starting or
// ending with '-'. (No regexp: package-level regexps are compiled in every
// karman process, the pod init included.)
func validAppName(n string) bool {
	if n == "" || len(n) > 63 || n[0] == '-' || n[len(n)-1] == '-' {
		return false
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Validate checks a spec and fills its defaults, reporting every problem.
func (s *PodSpec) Validate() error {
	var errs []string
	if len(s.Apps) == 0 && !s.KeepAlive {
		errs = append(errs, "no image given")
	}
	if len(s.Apps) == 0 && s.Interactive {
		errs = append(errs, "--interactive needs a pod of exactly one app")
	}
	if s.Net == "" {
		s.Net = network.Default
	}
	if _, err := network.ParseNet(s.Net); err != nil {
		errs = append(errs, err.Error())
	} else if len(s.Ports) > 0 && (s.Net == network.None || s.Net == network.Host) {
		errs = append(errs, fmt.Sprintf("--port needs a network of the pod's own; with --net=%s there is nothing to forward to", s.Net))
	}
	if err := network.CheckPorts(s.Ports); err != nil {
		errs = append(errs, err.Error())
	}
	if err := s.DNS.Check(); err != nil {
		errs = append(errs, err.Error())
	}
	switch s.PullPolicy {
	case "":
		s.PullPolicy = "new"
	case "new", "update", "never":
	default:
		errs = append(errs, fmt.Sprintf("--pull-policy=%s: use new, update or never", s.PullPolicy))
	}
	switch {
	case s.StopTimeout == 0:
		s.StopTimeout = 10 * time.Second
	case s.StopTimeout < 0:
		errs = append(errs, CheckStopTimeout(s.StopTimeout).Error())
	}
	if s.Name != "" {
		if err := CheckName(s.Name); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if s.Hostname != "" {
		if err := CheckHostname(s.Hostname); err != nil {
			errs = append(errs, err.Error())
		}
	}
	for k := range s.Sysctls {
		if err := isolators.CheckSysctl(k, s.Net == "host"); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if s.CgroupParent != "" {
		if err := CheckCgroupParent(s.CgroupParent); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if s.Interactive && len(s.Apps) > 1 {
		errs = append(errs, "--interactive needs a pod of exactly one app")
	}
	seen := map[string]bool{}
	for i := range s.Apps {
		a := &s.Apps[i]
		if a.Name == "" {
			a.Name = defaultAppName(a.Image)
		}
		if seen[a.Name] {
			a.Name = fmt.Sprintf("%s-%d", a.Name, i+1)
		}
		if !validAppName(a.Name) {
			errs = append(errs, fmt.Sprintf("app name %q: use lower-case letters, digits and '-'", a.Name))
		}
		seen[a.Name] = true
		if a.Exec != "" {
			if err := CheckExec(a.Exec); err != nil {
				errs = append(errs, fmt.Sprintf("app %s: %v", a.Name, err))
			}
		}
		for _, e := range a.Env {
			if err := CheckEnv(e); err != nil {
				errs = append(errs, fmt.Sprintf("app %s: %v", a.Name, err))
			}
		}
		if err := CheckArgs(a.Args); err != nil {
			errs = append(errs, fmt.Sprintf("app %s: %v", a.Name, err))
		}
		if a.User != "" {
			if err := CheckUser(a.User); err != nil {
				errs = append(errs, fmt.Sprintf("app %s: %v", a.Name, err))
			}
		}
		for _, m := range a.Mounts {
			if err := m.Check(); err != nil {
				errs = append(errs, err.Error())
			}
		}
		for _, err := range unjoin(a.Resources.Validate()) {
			errs = append(errs, fmt.Sprintf("app %s: %v", a.Name, err))
		}
		if err := CheckPIDNamespace(a.PIDNamespace); err != nil {
			errs = append(errs, fmt.Sprintf("app %s: %v", a.Name, err))
		}
		if a.OOMScoreAdj != nil {
			if err := poddir.CheckOOMScoreAdj(*a.OOMScoreAdj); err != nil {
				errs = append(errs, fmt.Sprintf("app %s: %v", a.Name, err))
			}
		}
		if _, err := isolators.AppCaps(a.CapsRetain, a.CapsRemove, s.Net == network.Host); err != nil {
			errs = append(errs, fmt.Sprintf("app %s: %v", a.Name, err))
		}
		if a.Seccomp != "" {
			sc, err := isolators.ParseSeccomp(a.Seccomp)
			switch {
			case err != nil:
				errs = append(errs, fmt.Sprintf("app %s: %v", a.Name, err))
			case s.InsecureSeccomp && sc.Mode != isolators.SeccompUnconfined:
				errs = append(errs, fmt.Sprintf("app %s: --seccomp %s and --insecure-options=seccomp exclude each other: the insecure option drops every filter", a.Name, a.Seccomp))
			}
		}
		for _, err := range unjoin(a.checkSecurity()) {
			errs = append(errs, fmt.Sprintf("app %s: %v", a.Name, err))
		}
		if a.SeccompProfile != "" && s.InsecureSeccomp {
			errs = append(errs, fmt.Sprintf("app %s: --seccomp-profile and --insecure-options=seccomp exclude each other: the insecure option drops every filter", a.Name))
		}
		if a.WorkingDir != "" && !path.IsAbs(a.WorkingDir) {
			errs = append(errs, fmt.Sprintf("--workdir %q must be absolute", a.WorkingDir))
		}
	}
	for k, v := range s.Labels {
		if k == "" || len(k) > 253 || len(v) > 4096 || strings.ContainsAny(k, "\x00\n=") {
			errs = append(errs, fmt.Sprintf("label %q: keys are 1 to 253 characters without '=' or newlines, values at most 4096", k))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(errs, "; "))
	}
	return nil
}

// unjoin lists the errors that errors.Join joined, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err != nil {
		return []error{err}
	}
	return nil
}

// defaultAppName derives an app name from an image reference: the last
// path component without tag, digest or .tar.
func defaultAppName(img string) string {
	s := img
	for _, p := range []string{"oci:", "docker-archive:", "docker://"} {
		s = strings.TrimPrefix(s, p)
	}
	base := path.Base(strings.SplitN(s, "@", 2)[0])
	if i := strings.IndexByte(base, ':'); i >= 0 {
		base = base[:i]
	}
	base = strings.TrimSuffix(base, ".tar")
	base = strings.Trim(strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' {
			return c
		}
		return '-'
	}, strings.ToLower(base)), "-")
	for strings.Contains(base, "--") {
		base = strings.ReplaceAll(base, "--", "-")
	}
	if len(base) > 63 {
		base = strings.Trim(base[:63], "-")
	}
	if base == "" {
		return "app"
	}
	return base
}

// checkVolumes resolves every volume's source as the pod's init will
// (poddir.CheckSource), so that a missing one, or one that leads out of
// its SourceRoot, is refused before anything is made. The init resolves
// each again when it mounts it.
func checkVolumes(spec PodSpec) error {
	var errs []error
	for _, a := range spec.Apps {
		for _, m := range a.Mounts {
			if err := poddir.CheckSource(m); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// The values of AppSpec.PIDNamespace (--pid).
const (
	PIDPod = "pod"
	PIDApp = "app"
)

// CheckPIDNamespace checks an AppSpec.PIDNamespace.
func CheckPIDNamespace(v string) error {
	switch v {
	case "", PIDPod, PIDApp:
		return nil
	}
	return fmt.Errorf("--pid %q: use pod (the PID namespace of the pod, shared by its apps) or app (one of the app's own)", v)
}

// CheckCgroupParent checks a PodSpec.CgroupParent: an absolute, clean
// cgroup path of letters, digits, '.', '_', '-' and '/'.
func CheckCgroupParent(p string) error {
	ok := path.IsAbs(p) && path.Clean(p) == p && p != "/"
	for _, c := range p {
		ok = ok && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '/')
	}
	if !ok || strings.Contains(p, "/.") {
		return fmt.Errorf("cgroup parent %q: use an absolute cgroup path, as /kubepods/burstable/pod1234 (karman is a cgroupfs runtime: not a systemd slice)", p)
	}
	return nil
}
