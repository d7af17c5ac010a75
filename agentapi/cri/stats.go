package cri

import (
	"context"
	"io/fs"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/isolators/cgroups"
	"github.com/karman-project/karman/stage0"
)

// Stats come from the apps' cgroups (CPU time, memory in use, processes)
// and from their writable layers (the overlay's upper directory).

// cpuSampler turns CPU time into a rate (UsageNanoCores) between two
// reads of one cgroup.
type cpuSampler struct {
	mu   sync.Mutex
	last map[string]cpuSample
}

type cpuSample struct {
	at    time.Time
	usage uint64
}

// rate records usage for key at now and returns the rate since the last
// record (0 for the first one).
func (c *cpuSampler) rate(key string, now time.Time, usage uint64) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		c.last = map[string]cpuSample{}
	}
	prev, ok := c.last[key]
	c.last[key] = cpuSample{at: now, usage: usage}
	if !ok || !now.After(prev.at) || usage < prev.usage {
		return 0
	}
	return uint64(float64(usage-prev.usage) / now.Sub(prev.at).Seconds())
}

// containerStats is one container's stats; st is its app's cgroup usage
// (zero when it does not run), podDir its pod's directory.
func (s *Server) containerStats(c *containerRecord, st cgroups.Stats, podDir string, now time.Time) *runtimeapi.ContainerStats {
	ts := now.UnixNano()
	cs := &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{Id: c.ID, Metadata: c.config.GetMetadata(), Labels: c.config.GetLabels(), Annotations: c.config.GetAnnotations()},
		Cpu: &runtimeapi.CpuUsage{Timestamp: ts, UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: st.CPUUsageNs},
			UsageNanoCores: &runtimeapi.UInt64Value{Value: s.cpu.rate(c.ID, now, st.CPUUsageNs)}},
		Memory: &runtimeapi.MemoryUsage{Timestamp: ts, WorkingSetBytes: &runtimeapi.UInt64Value{Value: st.MemoryCurrent},
			UsageBytes: &runtimeapi.UInt64Value{Value: st.MemoryCurrent}},
	}
	if lim := c.currentResources().GetMemoryLimitInBytes(); lim > 0 && uint64(lim) > st.MemoryCurrent {
		cs.Memory.AvailableBytes = &runtimeapi.UInt64Value{Value: uint64(lim) - st.MemoryCurrent}
	}
	if podDir != "" {
		upper := filepath.Join(podDir, "apps", c.App, "upper")
		used, inodes := diskUsage(upper)
		cs.WritableLayer = &runtimeapi.FilesystemUsage{Timestamp: ts, FsId: &runtimeapi.FilesystemIdentifier{Mountpoint: upper},
			UsedBytes: &runtimeapi.UInt64Value{Value: used}, InodesUsed: &runtimeapi.UInt64Value{Value: inodes}}
	}
	return cs
}

// diskUsage sums the sizes and counts the inodes below dir, on dir's
// file system only (an image volume's or another mount below it is not
// counted).
func diskUsage(dir string) (bytes, inodes uint64) {
	var root unix.Stat_t
	if unix.Lstat(dir, &root) != nil {
		return 0, 0
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Dev != root.Dev {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		inodes++
		if fi.Mode().IsRegular() {
			bytes += uint64(fi.Size())
		}
		return nil
	})
	return bytes, inodes
}

// fsCache keeps the usage of large trees (the image store, the pods)
// for fsCacheTTL: ImageFsInfo is asked often and walking them is not
// cheap.
type fsCache struct {
	mu sync.Mutex
	m  map[string]fsCached
}

type fsCached struct {
	at            time.Time
	bytes, inodes uint64
}

const fsCacheTTL = 30 * time.Second

func (c *fsCache) usage(dir string, now time.Time) (uint64, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[dir]; ok && now.Sub(e.at) < fsCacheTTL {
		return e.bytes, e.inodes
	}
	b, i := diskUsage(dir)
	if c.m == nil {
		c.m = map[string]fsCached{}
	}
	c.m[dir] = fsCached{at: now, bytes: b, inodes: i}
	return b, i
}

// podUsage reads the pods' usage once per pod: the apps' cgroup stats
// and the pod's directory, by pod UUID.
type podUsage struct {
	stats map[string]cgroups.Stats
	dir   string
}

func (s *Server) usageOf(ctx context.Context, uuids []string) map[string]podUsage {
	out := map[string]podUsage{}
	for _, u := range uuids {
		if _, ok := out[u]; ok {
			continue
		}
		var pu podUsage
		if pi, err := s.rt.Status(ctx, u); err == nil && pi.State == stage0.Running {
			pu.stats = pi.Resources
		}
		pu.dir, _ = s.rt.PodDir(u)
		out[u] = pu
	}
	return out
}

// ContainerStats reports one container's usage.
func (s *Server) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	c, _, err := s.lookContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	u := s.usageOf(ctx, []string{c.SandboxID})[c.SandboxID]
	return &runtimeapi.ContainerStatsResponse{Stats: s.containerStats(c, u.stats[c.App], u.dir, time.Now())}, nil
}

// ListContainerStats reports the usage of the containers the filter
// selects.
func (s *Server) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	f := req.GetFilter()
	cs := s.filterContainers(f.GetId(), f.GetPodSandboxId(), f.GetLabelSelector())
	var uuids []string
	for _, c := range cs {
		uuids = append(uuids, c.SandboxID)
	}
	us := s.usageOf(ctx, uuids)
	now := time.Now()
	out := []*runtimeapi.ContainerStats{}
	for _, c := range cs {
		u := us[c.SandboxID]
		out = append(out, s.containerStats(c, u.stats[c.App], u.dir, now))
	}
	return &runtimeapi.ListContainerStatsResponse{Stats: out}, nil
}

// PodSandboxStats reports a sandbox's usage: the sum of its containers'
// and each of theirs.
func (s *Server) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	s.mu.Lock()
	sb, err := s.findSandboxLocked(req.GetPodSandboxId())
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: s.sandboxStats(ctx, sb, time.Now())}, nil
}

// ListPodSandboxStats reports the usage of the sandboxes the filter
// selects.
func (s *Server) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	f := req.GetFilter()
	s.mu.Lock()
	var sbs []*sandboxRecord
	for id, sb := range s.sandboxes {
		if (f.GetId() == "" || len(id) >= len(f.GetId()) && id[:len(f.GetId())] == f.GetId()) && matchLabels(sb.config.GetLabels(), f.GetLabelSelector()) {
			sbs = append(sbs, sb)
		}
	}
	s.mu.Unlock()
	now := time.Now()
	out := []*runtimeapi.PodSandboxStats{}
	for _, sb := range sbs {
		out = append(out, s.sandboxStats(ctx, sb, now))
	}
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: out}, nil
}

func (s *Server) sandboxStats(ctx context.Context, sb *sandboxRecord, now time.Time) *runtimeapi.PodSandboxStats {
	cs := s.filterContainers("", sb.ID, nil)
	u := s.usageOf(ctx, []string{sb.ID})[sb.ID]
	ts := now.UnixNano()
	var cpu, mem, procs uint64
	for _, st := range u.stats {
		cpu += st.CPUUsageNs
		mem += st.MemoryCurrent
		procs += st.Pids
	}
	lin := &runtimeapi.LinuxPodSandboxStats{
		Cpu: &runtimeapi.CpuUsage{Timestamp: ts, UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: cpu},
			UsageNanoCores: &runtimeapi.UInt64Value{Value: s.cpu.rate("sandbox/"+sb.ID, now, cpu)}},
		Memory:  &runtimeapi.MemoryUsage{Timestamp: ts, WorkingSetBytes: &runtimeapi.UInt64Value{Value: mem}, UsageBytes: &runtimeapi.UInt64Value{Value: mem}},
		Process: &runtimeapi.ProcessUsage{Timestamp: ts, ProcessCount: &runtimeapi.UInt64Value{Value: procs}},
	}
	for _, c := range cs {
		lin.Containers = append(lin.Containers, s.containerStats(c, u.stats[c.App], u.dir, now))
	}
	if devs := podNetDev(u.dir); len(devs) > 0 {
		lin.Network = &runtimeapi.NetworkUsage{Timestamp: ts}
		for _, d := range devs {
			iu := &runtimeapi.NetworkInterfaceUsage{Name: d.name, RxBytes: &runtimeapi.UInt64Value{Value: d.rxBytes},
				RxErrors: &runtimeapi.UInt64Value{Value: d.rxErrors}, TxBytes: &runtimeapi.UInt64Value{Value: d.txBytes},
				TxErrors: &runtimeapi.UInt64Value{Value: d.txErrors}}
			lin.Network.Interfaces = append(lin.Network.Interfaces, iu)
			if lin.Network.DefaultInterface == nil || d.name == "eth0" {
				lin.Network.DefaultInterface = iu
			}
		}
	}
	c := sb.config
	return &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{Id: sb.ID, Metadata: c.GetMetadata(), Labels: c.GetLabels(), Annotations: c.GetAnnotations()},
		Linux:      lin,
	}
}
