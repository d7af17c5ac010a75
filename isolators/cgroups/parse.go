package cgroups

// Pure functions (no I/O) behind the cgroup code, so that the v2 and systemd
// decisions can be tested with strings on any host.

import (
	"fmt"
	"path"
	"slices"
	"strings"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	"github.com/containerd/cgroups/v3/cgroup2"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const (
	// DefaultParent is where pods go when the caller is not inside a systemd unit.
	DefaultParent = "/karman"
	// systemdPodsDir is the child of the caller's own (delegated) cgroup that holds pods under systemd.
	systemdPodsDir = "karman-pods"
	// selfLeaf is the leaf a v2 caller moves itself into when its own cgroup must hand out
	// controllers to karman-pods (cgroup v2 "no internal processes" rule).
	selfLeaf = "karman-self"

	cpuPeriodUs = 100000
	// minCPUQuotaUs is the smallest CFS quota the kernel accepts (1ms).
	minCPUQuotaUs = 1000
)

// procCgroupEntry is one line of /proc/<pid>/cgroup: "id:controllers:path".
type procCgroupEntry struct {
	ID          string
	Controllers []string // empty for the v2 entry ("0::/path")
	Path        string
}

// parseProcCgroup parses the contents of /proc/<pid>/cgroup.
func parseProcCgroup(s string) ([]procCgroupEntry, error) {
	var out []procCgroupEntry
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("cgroups: bad /proc/<pid>/cgroup line %q", line)
		}
		e := procCgroupEntry{ID: parts[0], Path: parts[2]}
		if parts[1] != "" {
			e.Controllers = strings.Split(parts[1], ",")
		}
		out = append(out, e)
	}
	return out, nil
}

// ownUnitCgroup returns the cgroup systemd placed the process in: the path of the
// name=systemd hierarchy (v1, hybrid) or, without one, of the v2 entry "0::".
func ownUnitCgroup(entries []procCgroupEntry) (string, bool) {
	for _, e := range entries {
		if slices.Contains(e.Controllers, "name=systemd") {
			return e.Path, true
		}
	}
	for _, e := range entries {
		if e.ID == "0" && len(e.Controllers) == 0 {
			return e.Path, true
		}
	}
	return "", false
}

// ownV2Cgroup returns the path of the "0::" entry.
func ownV2Cgroup(entries []procCgroupEntry) (string, bool) {
	for _, e := range entries {
		if e.ID == "0" && len(e.Controllers) == 0 {
			return e.Path, true
		}
	}
	return "", false
}

// parentFor chooses the parent cgroup of pods from the contents of /proc/self/cgroup and
// whether systemd is the init system (/run/systemd/system exists, as sd_booted(3) checks).
// Inside a systemd unit (own path is not "/") pods go to "<own>/karman-pods", the unit's
// delegated subtree; elsewhere to "/karman".
func parentFor(procSelfCgroup string, systemdBooted bool) (string, error) {
	entries, err := parseProcCgroup(procSelfCgroup)
	if err != nil {
		return "", err
	}
	if !systemdBooted {
		return DefaultParent, nil
	}
	own, ok := ownUnitCgroup(entries)
	if !ok {
		return DefaultParent, nil
	}
	own = path.Clean("/" + own)
	// A caller that already moved itself into its leaf (v2) still means its unit's cgroup.
	if path.Base(own) == selfLeaf {
		own = path.Dir(own)
	}
	if own == "/" {
		return DefaultParent, nil
	}
	return path.Join(own, systemdPodsDir), nil
}

// inCgroup reports whether a process whose /proc/<pid>/cgroup is given is inside cg (or
// below it) in any hierarchy.
func inCgroup(procCgroup, cg string) bool {
	entries, err := parseProcCgroup(procCgroup)
	if err != nil {
		return false
	}
	cg = path.Clean("/" + cg)
	for _, e := range entries {
		p := path.Clean("/" + e.Path)
		if p == cg || strings.HasPrefix(p, cg+"/") {
			return true
		}
	}
	return false
}

// validName checks a single cgroup path element (pod uuid, app name).
func validName(kind, name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00\n") {
		return fmt.Errorf("cgroups: invalid %s name %q", kind, name)
	}
	return nil
}

// cleanCgroupPath makes a relative cgroup path absolute and clean ("karman/x" -> "/karman/x").
func cleanCgroupPath(p string) string {
	return path.Clean("/" + p)
}

// toSpec converts Resources to the OCI form both containerd backends consume.
func toSpec(r Resources) (*specs.LinuxResources, error) {
	if r.MemoryBytes < 0 || r.CPUMillis < 0 || r.PidsLimit < 0 {
		return nil, fmt.Errorf("cgroups: negative resource limit in %+v", r)
	}
	spec := &specs.LinuxResources{}
	if r.MemoryBytes > 0 {
		m := r.MemoryBytes
		spec.Memory = &specs.LinuxMemory{Limit: &m}
	}
	if r.CPUMillis > 0 || r.CPUShares > 0 {
		spec.CPU = &specs.LinuxCPU{}
		if r.CPUMillis > 0 {
			q, p := cpuQuota(r.CPUMillis)
			spec.CPU.Quota, spec.CPU.Period = &q, &p
		}
		if r.CPUShares > 0 {
			s := r.CPUShares
			spec.CPU.Shares = &s
		}
	}
	if r.PidsLimit > 0 {
		spec.Pids = &specs.LinuxPids{Limit: &r.PidsLimit}
	}
	spec.Devices = deviceRules(r)
	return spec, nil
}

// DeviceAllowlist is every app's device rule set (the devices cgroup on
// v1): nothing, but for the devices a pod's /dev holds (null, zero, full,
// random, urandom, tty, the pod's own pts and ptmx) and mknod of any
// device, which the node is no use without: a device node an image ships
// or an app makes cannot be opened.
var DeviceAllowlist = []specs.LinuxDeviceCgroup{
	{Allow: false, Type: "a", Major: ptr(-1), Minor: ptr(-1), Access: "rwm"},
	{Allow: true, Type: "c", Major: ptr(-1), Minor: ptr(-1), Access: "m"},
	{Allow: true, Type: "b", Major: ptr(-1), Minor: ptr(-1), Access: "m"},
	{Allow: true, Type: "c", Major: ptr(1), Minor: ptr(3), Access: "rwm"},    // null
	{Allow: true, Type: "c", Major: ptr(1), Minor: ptr(5), Access: "rwm"},    // zero
	{Allow: true, Type: "c", Major: ptr(1), Minor: ptr(7), Access: "rwm"},    // full
	{Allow: true, Type: "c", Major: ptr(1), Minor: ptr(8), Access: "rwm"},    // random
	{Allow: true, Type: "c", Major: ptr(1), Minor: ptr(9), Access: "rwm"},    // urandom
	{Allow: true, Type: "c", Major: ptr(5), Minor: ptr(0), Access: "rwm"},    // tty
	{Allow: true, Type: "c", Major: ptr(5), Minor: ptr(2), Access: "rwm"},    // ptmx
	{Allow: true, Type: "c", Major: ptr(136), Minor: ptr(-1), Access: "rwm"}, // pts
}

func ptr(n int64) *int64 { return &n }

// cpuQuota returns the CFS quota and period (µs) for millicores: quota = millis*period/1000,
// at least the kernel's 1ms minimum.
func cpuQuota(millis int64) (quota int64, period uint64) {
	q := millis * cpuPeriodUs / 1000
	if q < minCPUQuotaUs {
		q = minCPUQuotaUs
	}
	return q, cpuPeriodUs
}

// v2Resources converts Resources to containerd's cgroup2 form (shares become cpu.weight).
func v2Resources(r Resources) (*cgroup2.Resources, error) {
	spec, err := toSpec(r)
	if err != nil {
		return nil, err
	}
	return cgroup2.ToResources(spec), nil
}

// subtreeEnableLine returns what to write to a v2 cgroup.subtree_control ("+cpu +memory")
// to enable the wanted controllers that the cgroup has (available, from cgroup.controllers)
// and has not enabled yet (current, from cgroup.subtree_control). Empty means nothing to do.
func subtreeEnableLine(wanted []string, available, current string) string {
	avail := strings.Fields(available)
	cur := strings.Fields(current)
	var plus []string
	for _, c := range wanted {
		if slices.Contains(avail, c) && !slices.Contains(cur, c) {
			plus = append(plus, "+"+c)
		}
	}
	return strings.Join(plus, " ")
}

// cgroupLevels returns the cgroup and its ancestors, root first: "/a/b" -> "/", "/a", "/a/b".
func cgroupLevels(p string) []string {
	p = cleanCgroupPath(p)
	levels := []string{"/"}
	if p == "/" {
		return levels
	}
	cur := ""
	for _, el := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		cur += "/" + el
		levels = append(levels, cur)
	}
	return levels
}

// statsFromV1 maps containerd's v1 metrics to Stats.
func statsFromV1(m *v1stats.Metrics) Stats {
	var s Stats
	if m == nil {
		return s
	}
	if mem := m.Memory; mem != nil && mem.Usage != nil {
		s.MemoryCurrent = mem.Usage.Usage
		s.MemoryPeak = mem.Usage.Max
	}
	if oc := m.MemoryOomControl; oc != nil {
		s.OOMKills = oc.OomKill
	}
	if cpu := m.CPU; cpu != nil {
		if cpu.Usage != nil {
			s.CPUUsageNs = cpu.Usage.Total
		}
		if t := cpu.Throttling; t != nil {
			s.ThrottledPeriods = t.ThrottledPeriods
			s.ThrottledNs = t.ThrottledTime
		}
	}
	if p := m.Pids; p != nil {
		s.Pids = p.Current
	}
	return s
}

// statsFromV2 maps containerd's v2 metrics to Stats (µs become ns).
func statsFromV2(m *v2stats.Metrics) Stats {
	var s Stats
	if m == nil {
		return s
	}
	if mem := m.Memory; mem != nil {
		s.MemoryCurrent = mem.Usage
		s.MemoryPeak = mem.MaxUsage
	}
	if ev := m.MemoryEvents; ev != nil {
		s.OOMKills = ev.OomKill
	}
	if cpu := m.CPU; cpu != nil {
		s.CPUUsageNs = cpu.UsageUsec * 1000
		s.ThrottledPeriods = cpu.NrThrottled
		s.ThrottledNs = cpu.ThrottledUsec * 1000
	}
	if p := m.Pids; p != nil {
		s.Pids = p.Current
	}
	return s
}
