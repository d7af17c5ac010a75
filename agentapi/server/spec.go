package server

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/karman-project/karman/agentapi"
	"github.com/karman-project/karman/network"
	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/stage1/poddir"
)

// LabelTask is the pod label that holds the task id.
const LabelTask = "karman.agent/task"

// appName is the name of a task's (single) app inside its pod.
const appName = "task"

// validID accepts task ids of 1 to 128 of [A-Za-z0-9._-], not starting
// with '.' or '-': a task's id is its pod's name (stage0.CheckName).
func validID(id string) bool {
	return stage0.CheckName(id) == nil
}

// specHash identifies a spec: same hash, same task.
func specHash(s agentapi.TaskSpec) string {
	b, _ := json.Marshal(s) // maps marshal with sorted keys
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// validate checks a spec against the agent's configuration and returns
// every problem. It does not look at other tasks (that is admission).
func (a *Agent) validate(s *agentapi.TaskSpec) []string {
	var p []string
	if strings.TrimSpace(s.Image) == "" {
		p = append(p, "image: required")
	}
	// The checks of the CLI's flags, on the fields that say the same.
	if len(s.Command) > 0 {
		if err := stage0.CheckExec(s.Command[0]); err != nil {
			p = append(p, fmt.Sprintf("command: the first element (the program): %v", err))
		}
	}
	if err := stage0.CheckArgs(slices.Concat(s.Command[min(1, len(s.Command)):], s.Args)); err != nil {
		p = append(p, "command and args: "+err.Error())
	}
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		if err := stage0.CheckEnvVar(k, s.Env[k]); err != nil {
			p = append(p, "env: "+err.Error())
		}
	}
	if s.User != "" {
		if err := stage0.CheckUser(s.User); err != nil {
			p = append(p, err.Error())
		}
	}
	// Each field alone, so that each problem names its field.
	for _, f := range []struct {
		name string
		r    agentapi.TaskResources
	}{
		{"cpuMillis", agentapi.TaskResources{CPUMillis: s.Resources.CPUMillis}},
		{"memoryBytes", agentapi.TaskResources{MemoryBytes: s.Resources.MemoryBytes}},
		{"pids", agentapi.TaskResources{Pids: s.Resources.Pids}},
	} {
		if err := taskResources(f.r).Validate(); err != nil {
			p = append(p, "resources."+f.name+": "+err.Error())
		}
	}
	switch s.Restart {
	case "", "never", "on-failure", "always":
	default:
		p = append(p, fmt.Sprintf("restart %q: use never, on-failure or always", s.Restart))
	}
	if s.StopTimeout != "" {
		if d, err := time.ParseDuration(s.StopTimeout); err != nil {
			p = append(p, fmt.Sprintf("stopTimeout %q: use a positive duration such as 10s", s.StopTimeout))
		} else if err := stage0.CheckStopTimeout(d); err != nil {
			p = append(p, "stopTimeout: "+err.Error())
		}
	}
	if s.WorkingDir != "" && !filepath.IsAbs(s.WorkingDir) {
		p = append(p, fmt.Sprintf("workingDir %q: must be an absolute path", s.WorkingDir))
	}
	for k, v := range s.Labels {
		switch {
		case strings.HasPrefix(k, "karman."):
			p = append(p, fmt.Sprintf("label %q: the karman. prefix is reserved for the agent", k))
		case k == "" || len(k) > 253 || len(v) > 4096 || strings.ContainsAny(k, "\x00\n="):
			p = append(p, fmt.Sprintf("label %q: keys are 1 to 253 characters without '=' or newlines, values at most 4096", k))
		}
	}
	p = append(p, a.validateNetworks(s)...)
	for _, v := range s.Volumes {
		p = append(p, a.validateVolume(v)...)
	}
	return p
}

// validateNetworks checks networks and ports. "none" and "host" stand
// alone; other names are the node's configured networks, passed through to
// stage0, which sets them up or refuses them.
func (a *Agent) validateNetworks(s *agentapi.TaskSpec) []string {
	var p []string
	nets := s.Networks
	special := slices.Contains(nets, "none") || slices.Contains(nets, "host")
	if special && len(nets) > 1 {
		p = append(p, fmt.Sprintf("networks %v: none and host cannot be combined with other networks", nets))
	}
	for _, n := range nets {
		// The names stage0 accepts, without CNI arguments (NAME:K=V).
		if _, err := network.ParseNet(n); n == "" || err != nil || strings.ContainsAny(n, ",:") {
			p = append(p, fmt.Sprintf("network %q: not a network name (letters, digits, '-', '_', '.')", n))
		}
	}
	none := len(nets) == 0 || slices.Equal(nets, []string{"none"})
	host := slices.Equal(nets, []string{"host"})
	seen := map[string]bool{}
	for _, pt := range s.Ports {
		proto := pt.Protocol
		if proto == "" {
			proto = "tcp"
		}
		key := fmt.Sprintf("%s/%d", proto, pt.HostPort)
		switch {
		case proto != "tcp" && proto != "udp":
			p = append(p, fmt.Sprintf("port %d: protocol %q, use tcp or udp", pt.HostPort, pt.Protocol))
		case pt.HostPort < 1 || pt.HostPort > 65535 || pt.ContainerPort < 1 || pt.ContainerPort > 65535:
			p = append(p, fmt.Sprintf("port %d:%d: ports are 1 to 65535", pt.HostPort, pt.ContainerPort))
		case none:
			p = append(p, fmt.Sprintf("port %d: a task on network none cannot be reached; give it a network", pt.HostPort))
		case host && pt.HostPort != pt.ContainerPort:
			p = append(p, fmt.Sprintf("port %d:%d: on the host network the task's port is the host's; use the same number", pt.HostPort, pt.ContainerPort))
		case seen[key]:
			p = append(p, fmt.Sprintf("port %s: asked for twice", key))
		}
		seen[key] = true
	}
	return p
}

// validateVolume checks a volume on its face: absolute paths, a source
// under one of the agent's --volume-dir, a target the runtime does not
// own. Whether the source exists and stays under its directory is for
// checkVolumes, just before the launch.
func (a *Agent) validateVolume(v agentapi.Volume) []string {
	if !filepath.IsAbs(v.Source) || !filepath.IsAbs(v.Target) {
		return []string{fmt.Sprintf("volume %s:%s: both paths must be absolute", v.Source, v.Target)}
	}
	if err := (poddir.Mount{Source: v.Source, Target: v.Target}).Check(); err != nil {
		return []string{err.Error()}
	}
	if volumeRoot(a.cfg.VolumeDirs, v.Source) != "" {
		return nil
	}
	if len(a.cfg.VolumeDirs) == 0 {
		return []string{fmt.Sprintf("volume %s: this agent allows no volumes (start it with --volume-dir DIR)", v.Source)}
	}
	return []string{fmt.Sprintf("volume %s: not under an allowed directory (%s)", v.Source, strings.Join(a.cfg.VolumeDirs, ", "))}
}

// volumeRoot returns the outermost of dirs that src is in or under, or
// "": the directory a task's volume is resolved beneath.
func volumeRoot(dirs []string, src string) string {
	var root string
	for _, d := range dirs {
		d = filepath.Clean(d)
		if rel, err := filepath.Rel(d, filepath.Clean(src)); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			if root == "" || len(d) < len(root) {
				root = d
			}
		}
	}
	return root
}

// checkVolumes resolves every volume's source beneath its volume
// directory, as the pod's init will (poddir.CheckSource): a source that is
// missing, or that a symlink or ".." leads out of its directory, is
// refused before a pod is made (ErrLaunch: 422). The init resolves it
// again, by descriptor, so a change after this check cannot lead out
// either.
func checkVolumes(id string, s agentapi.TaskSpec, dirs []string) error {
	var errs []error
	for _, m := range podSpec(id, s, dirs).Apps[0].Mounts {
		if err := poddir.CheckSource(m); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("task %s: %w: %w", id, ErrLaunch, errors.Join(errs...))
	}
	return nil
}

// taskResources are the limits of a task's pod.
func taskResources(r agentapi.TaskResources) poddir.Resources {
	return poddir.Resources{CPUMillis: r.CPUMillis, MemoryBytes: r.MemoryBytes, PidsLimit: r.Pids}
}

// podSpec turns a valid task spec into the pod that runs it.
// A volume's source is resolved beneath its volume directory (dirs, see
// volumeRoot).
func podSpec(id string, s agentapi.TaskSpec, dirs []string) stage0.PodSpec {
	app := stage0.AppSpec{Image: s.Image, Name: appName, User: s.User, WorkingDir: s.WorkingDir,
		Resources: taskResources(s.Resources)}
	if len(s.Command) > 0 {
		app.Exec = s.Command[0]
		app.Args = slices.Concat(s.Command[1:], s.Args)
	} else {
		app.Args = s.Args
	}
	keys := make([]string, 0, len(s.Env))
	for k := range s.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		app.Env = append(app.Env, k+"="+s.Env[k])
	}
	for _, v := range s.Volumes {
		app.Mounts = append(app.Mounts, poddir.Mount{Source: filepath.Clean(v.Source), Target: v.Target, ReadOnly: v.ReadOnly,
			SourceRoot: volumeRoot(dirs, v.Source)})
	}
	labels := map[string]string{LabelTask: id}
	for k, v := range s.Labels {
		labels[k] = v
	}
	ps := stage0.PodSpec{Apps: []stage0.AppSpec{app}, Name: id, Labels: labels, PullPolicy: "new"}
	ps.StopTimeout, _ = time.ParseDuration(s.StopTimeout)
	attachNetworks(&ps, s)
	return ps
}

// attachNetworks wires the task's networks and ports into the pod spec:
// the network name(s) go to PodSpec.Net (none, host, default or
// configured CNI networks; none when the task names none), and the ports
// become the pod's port forwards. On the host network a task's port is
// the host's and needs no forward.
func attachNetworks(ps *stage0.PodSpec, s agentapi.TaskSpec) {
	ps.Net = strings.Join(s.Networks, ",")
	if ps.Net == "" {
		ps.Net = "none"
	}
	if ps.Net == "host" {
		return
	}
	for _, pt := range s.Ports {
		ps.Ports = append(ps.Ports, portMapping(pt))
	}
}
