package cri

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/isolators"
	"github.com/karman-project/karman/network"
	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/stage1/poddir"
)

// The translation of the CRI's configs into stage0's specs: one function
// per level, sandboxSpec for a PodSandboxConfig and appSpec for a
// ContainerConfig. What stage0 cannot do is refused with InvalidArgument
// (never silently dropped), and what karman does not implement at all
// (image volumes, id-mapped mounts) with Unimplemented, so that a client
// can tell the two apart.

// terminationLog is kubelet's default terminationMessagePath.
const terminationLog = "/dev/termination-log"

// sandboxSpec is the pod of a sandbox: kept alive, no apps.
func (s *Server) sandboxSpec(c *runtimeapi.PodSandboxConfig) (stage0.PodSpec, error) {
	md := c.GetMetadata()
	spec := stage0.PodSpec{
		KeepAlive: true,
		Hostname:  c.GetHostname(),
		Labels:    map[string]string{LabelSandbox: md.GetNamespace() + "/" + md.GetName(), LabelState: s.cfg.StateDir},
		Net:       network.Default,
	}
	if n := podName(md); stage0.CheckName(n) == nil {
		spec.Name = n
	}
	sc := c.GetLinux().GetSecurityContext()
	ns := sc.GetNamespaceOptions()
	hostNet := ns.GetNetwork() == runtimeapi.NamespaceMode_NODE
	if hostNet {
		spec.Net = network.Host
	}
	var errs []string
	spec.HostPID = ns.GetPid() == runtimeapi.NamespaceMode_NODE
	spec.HostIPC = ns.GetIpc() == runtimeapi.NamespaceMode_NODE
	switch ns.GetIpc() {
	case runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_NODE:
	default:
		errs = append(errs, fmt.Sprintf("IPC namespace %s: a sandbox has its own (POD) or the host's (NODE)", ns.GetIpc()))
	}
	if ns.GetPid() == runtimeapi.NamespaceMode_TARGET {
		errs = append(errs, "PID namespace TARGET: not supported; use POD, CONTAINER or NODE")
	}
	if u := ns.GetUsernsOptions(); u != nil && u.GetMode() != runtimeapi.NamespaceMode_NODE {
		errs = append(errs, fmt.Sprintf("user namespace %s: not supported; pods run in the host's user namespace", u.GetMode()))
	}
	if !hostNet {
		// With the host's network the ports are the host's already.
		for _, pm := range c.GetPortMappings() {
			if pm.GetHostPort() == 0 {
				continue // a declared port, not forwarded
			}
			proto := strings.ToLower(pm.GetProtocol().String())
			if proto != "tcp" && proto != "udp" {
				errs = append(errs, fmt.Sprintf("port mapping %d: protocol %s: karman forwards tcp and udp", pm.GetHostPort(), pm.GetProtocol()))
				continue
			}
			if ip := pm.GetHostIp(); ip != "" && ip != "0.0.0.0" && ip != "::" {
				errs = append(errs, fmt.Sprintf("port mapping %d: host_ip %s: karman forwards a host port on every address of the host", pm.GetHostPort(), ip))
				continue
			}
			if pm.GetHostPort() < 0 || pm.GetHostPort() > 65535 || pm.GetContainerPort() <= 0 || pm.GetContainerPort() > 65535 {
				errs = append(errs, fmt.Sprintf("port mapping %d:%d: ports are 1 to 65535", pm.GetHostPort(), pm.GetContainerPort()))
				continue
			}
			spec.Ports = append(spec.Ports, network.PortMapping{HostPort: uint16(pm.GetHostPort()), PodPort: uint16(pm.GetContainerPort()), Protocol: proto})
		}
	}
	if d := c.GetDnsConfig(); d != nil {
		spec.DNS = network.DNS{Servers: d.GetServers(), Search: d.GetSearches(), Options: d.GetOptions()}
	}
	spec.CgroupParent = c.GetLinux().GetCgroupParent()
	if len(c.GetLinux().GetSysctls()) > 0 {
		spec.Sysctls = c.GetLinux().GetSysctls()
	}
	if len(errs) > 0 {
		return spec, invalid("sandbox %s: %s", podName(md), strings.Join(errs, "; "))
	}
	return spec, nil
}

// The CRI features the translation supports, for Status: read-only
// mounts are recursive, the supplemental groups policy is applied; user
// namespaces are not.
var (
	handlerFeatures = &runtimeapi.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: true}
	runtimeFeatures = &runtimeapi.RuntimeFeatures{SupplementalGroupsPolicy: true}
)

// podName is the namespace and name of a sandbox, as karman names its
// pod.
func podName(md *runtimeapi.PodSandboxMetadata) string {
	if md.GetNamespace() == "" {
		return md.GetName()
	}
	return md.GetNamespace() + "_" + md.GetName()
}

// appSpec is the app of a container in the sandbox sb; image is the
// stored image's digest.
func (s *Server) appSpec(sb *sandboxRecord, c *runtimeapi.ContainerConfig, app, image string) (stage0.AppSpec, error) {
	as := stage0.AppSpec{Image: image, Name: app, WorkingDir: c.GetWorkingDir(),
		Stdin: c.GetStdin(), StdinOnce: c.GetStdinOnce(), TTY: c.GetTty()}
	var errs, unsupported []string
	if cmd := c.GetCommand(); len(cmd) > 0 {
		as.Exec = cmd[0]
		as.Args = append(slices.Clone(cmd[1:]), c.GetArgs()...)
		if as.Args == nil {
			as.Args = []string{} // the image's cmd is dropped with its entrypoint
		}
	} else {
		as.Args = c.GetArgs()
	}
	for _, kv := range c.GetEnvs() {
		as.Env = append(as.Env, kv.GetKey()+"="+string(kv.GetValue()))
	}
	for _, m := range c.GetMounts() {
		if m.GetImage().GetImage() != "" {
			unsupported = append(unsupported, fmt.Sprintf("mount %s: image volumes are not supported", m.GetContainerPath()))
			continue
		}
		if len(m.GetUidMappings()) > 0 || len(m.GetGidMappings()) > 0 {
			unsupported = append(unsupported, fmt.Sprintf("mount %s: id-mapped mounts are not supported", m.GetContainerPath()))
			continue
		}
		if path.Clean(m.GetContainerPath()) == terminationLog {
			// kubelet's default terminationMessagePath: karman owns an
			// app's /dev, so the message file is not mounted (kubelet
			// then reports no message, or the log's end with
			// FallbackToLogsOnError).
			s.termOnce.Do(func() {
				s.log.Info("cri: kubelet's termination message file is not mounted: karman owns the containers' /dev (logged once)", "path", terminationLog)
			})
			continue
		}
		src := m.GetHostPath()
		if src != "" {
			if _, err := os.Stat(src); os.IsNotExist(err) {
				// What kubelet names and does not exist is made, as the
				// other runtimes do (a hostPath of type "").
				os.MkdirAll(src, 0o755)
			}
			if r, err := filepath.EvalSymlinks(src); err == nil {
				src = r
			}
		}
		// readonly alone is the volume's own mount, recursive_read_only
		// its submounts too. SELinux relabelling is ignored: no SELinux
		// on these hosts.
		mt := poddir.Mount{Source: src, Target: m.GetContainerPath(), ReadOnly: m.GetReadonly(), NonRecursive: m.GetReadonly() && !m.GetRecursiveReadOnly()}
		switch m.GetPropagation() {
		case runtimeapi.MountPropagation_PROPAGATION_PRIVATE:
		case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			mt.Propagation = poddir.PropagationSlave
		case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			mt.Propagation = poddir.PropagationShared
		default:
			errs = append(errs, fmt.Sprintf("mount %s: propagation %s: use PRIVATE, HOST_TO_CONTAINER or BIDIRECTIONAL", m.GetContainerPath(), m.GetPropagation()))
		}
		if m.GetRecursiveReadOnly() {
			if !m.GetReadonly() {
				errs = append(errs, fmt.Sprintf("mount %s: recursive_read_only needs readonly", m.GetContainerPath()))
			}
			if mt.Propagation != "" {
				errs = append(errs, fmt.Sprintf("mount %s: recursive_read_only needs propagation PRIVATE", m.GetContainerPath()))
			}
		}
		as.Mounts = append(as.Mounts, mt)
	}
	for _, d := range c.GetDevices() {
		as.Devices = append(as.Devices, stage0.DeviceSpec{HostPath: d.GetHostPath(), Path: d.GetContainerPath(), Access: d.GetPermissions()})
	}
	lc := c.GetLinux()
	as.Resources = appResources(lc.GetResources())
	if adj := lc.GetResources().GetOomScoreAdj(); adj != 0 {
		v := s.clampOOMScoreAdj(int(adj))
		as.OOMScoreAdj = &v
	}
	sc := lc.GetSecurityContext()
	switch {
	case sc.GetRunAsUsername() != "":
		as.User = sc.GetRunAsUsername()
		if g := sc.GetRunAsGroup(); g != nil {
			as.Group = strconv.FormatInt(g.GetValue(), 10)
		}
	case sc.GetRunAsUser() != nil:
		as.User = strconv.FormatInt(sc.GetRunAsUser().GetValue(), 10)
		if g := sc.GetRunAsGroup(); g != nil {
			as.User += ":" + strconv.FormatInt(g.GetValue(), 10)
		}
	case sc.GetRunAsGroup() != nil:
		errs = append(errs, "run_as_group without run_as_user")
	}
	as.ReadonlyRootfs = sc.GetReadonlyRootfs()
	for _, g := range sc.GetSupplementalGroups() {
		if g < 0 || g > 1<<32-2 {
			errs = append(errs, fmt.Sprintf("supplemental group %d: gids are 0 to 4294967294", g))
			continue
		}
		as.SupplementalGroups = append(as.SupplementalGroups, uint32(g))
	}
	switch sc.GetSupplementalGroupsPolicy() {
	case runtimeapi.SupplementalGroupsPolicy_Merge:
		as.GroupsPolicy = stage0.GroupsMerge
	case runtimeapi.SupplementalGroupsPolicy_Strict:
		as.GroupsPolicy = stage0.GroupsStrict
	default:
		errs = append(errs, fmt.Sprintf("supplemental groups policy %s: use Merge or Strict", sc.GetSupplementalGroupsPolicy()))
	}
	// Kubernetes sets no_new_privs where allowPrivilegeEscalation is
	// false; unset, setuid programs work, as with the other runtimes.
	as.NewPrivileges = !sc.GetNoNewPrivs()
	as.Privileged = sc.GetPrivileged()
	// Empty lists cannot be told from none given on the wire: both keep
	// the defaults, as containerd does.
	if len(sc.GetMaskedPaths()) > 0 {
		as.MaskedPaths = slices.Clone(sc.GetMaskedPaths())
	}
	if len(sc.GetReadonlyPaths()) > 0 {
		as.ReadonlyPaths = slices.Clone(sc.GetReadonlyPaths())
	}
	hostNet := sb.config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
	if caps := sc.GetCapabilities(); caps != nil && (len(caps.GetAddCapabilities()) > 0 || len(caps.GetDropCapabilities()) > 0) {
		set, err := capSet(caps.GetAddCapabilities(), caps.GetDropCapabilities(), hostNet)
		if err != nil {
			errs = append(errs, err.Error())
		}
		if len(set) == 0 {
			as.CapsRemove = isolators.AllCaps()
		} else {
			as.CapsRetain = set
		}
	}
	switch p := sc.GetSeccomp(); {
	case p == nil:
		// No profile is Unconfined, as the CRI says (kubelet sends
		// RuntimeDefault when it is asked for).
		as.Seccomp = isolators.SeccompUnconfined
	case p.GetProfileType() == runtimeapi.SecurityProfile_RuntimeDefault:
	case p.GetProfileType() == runtimeapi.SecurityProfile_Unconfined:
		as.Seccomp = isolators.SeccompUnconfined
	case p.GetProfileType() == runtimeapi.SecurityProfile_Localhost:
		// A file of the node, in the OCI format, read when the app is
		// made; a privileged container has no filter.
		if !filepath.IsAbs(p.GetLocalhostRef()) {
			errs = append(errs, fmt.Sprintf("seccomp profile Localhost %q: give the profile file's absolute path", p.GetLocalhostRef()))
		} else if !as.Privileged {
			as.SeccompProfile = p.GetLocalhostRef()
		}
	default:
		errs = append(errs, fmt.Sprintf("seccomp profile %s: not supported", p.GetProfileType()))
	}
	sbPID := sb.config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetPid()
	switch ns := sc.GetNamespaceOptions(); ns.GetPid() {
	case runtimeapi.NamespaceMode_POD:
		as.PIDNamespace = stage0.PIDPod
	case runtimeapi.NamespaceMode_CONTAINER:
		as.PIDNamespace = stage0.PIDApp
	case runtimeapi.NamespaceMode_NODE:
		// The sandbox's: the host's when the sandbox has NODE.
		as.PIDNamespace = stage0.PIDPod
		if sbPID != runtimeapi.NamespaceMode_NODE {
			errs = append(errs, "PID namespace NODE in a sandbox without it: give the sandbox PID namespace NODE")
		}
	default:
		errs = append(errs, fmt.Sprintf("PID namespace %s: not supported yet", ns.GetPid()))
	}
	if len(unsupported) > 0 {
		return as, status.Errorf(codes.Unimplemented, "container %s: %s", c.GetMetadata().GetName(), strings.Join(append(unsupported, errs...), "; "))
	}
	if len(errs) > 0 {
		return as, invalid("container %s: %s", c.GetMetadata().GetName(), strings.Join(errs, "; "))
	}
	return as, nil
}

// capSet is the capability set of a container: the default set (less
// what a pod on the host's network loses), with add added and drop
// dropped; ALL in drop starts from none, ALL in add gives every one.
func capSet(add, drop []string, hostNet bool) ([]string, error) {
	set, err := isolators.AppCaps(nil, nil, hostNet)
	if err != nil {
		return nil, err
	}
	norm := func(list []string) ([]string, bool, error) {
		var out []string
		all := false
		for _, c := range list {
			if strings.EqualFold(strings.TrimPrefix(strings.ToUpper(c), "CAP_"), "ALL") {
				all = true
				continue
			}
			n, err := isolators.AppCaps([]string{c}, nil, false)
			if err != nil {
				return nil, false, err
			}
			out = append(out, n...)
		}
		return out, all, nil
	}
	a, addAll, err := norm(add)
	if err != nil {
		return nil, err
	}
	d, dropAll, err := norm(drop)
	if err != nil {
		return nil, err
	}
	if dropAll {
		set = nil
	}
	set = slices.DeleteFunc(set, func(c string) bool { return slices.Contains(d, c) })
	if addAll {
		set = isolators.AllCaps()
	}
	for _, c := range a {
		if !slices.Contains(set, c) {
			set = append(set, c)
		}
	}
	slices.Sort(set)
	return set, nil
}
