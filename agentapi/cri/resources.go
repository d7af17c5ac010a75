package cri

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/stage1/poddir"
)

// currentResources is what the container runs with: the last update's
// or the request's.
func (c *containerRecord) currentResources() *runtimeapi.LinuxContainerResources {
	if c.resources != nil {
		return c.resources
	}
	return c.config.GetLinux().GetResources()
}

// cpuMillis is the CPU a container asked for, in millicores: kubelet
// turns a request into CPU shares (1024 a core) and a limit into a quota
// per period.
func cpuMillis(r *runtimeapi.LinuxContainerResources) int64 {
	if sh := r.GetCpuShares(); sh > 2 {
		return sh * 1000 / 1024
	}
	if q, p := r.GetCpuQuota(), r.GetCpuPeriod(); q > 0 && p > 0 {
		return q * 1000 / p
	}
	return 0
}

// appResources maps a container's resources onto an app's cgroup limits.
func appResources(r *runtimeapi.LinuxContainerResources) poddir.Resources {
	var out poddir.Resources
	if r == nil {
		return out
	}
	out.MemoryBytes = max(0, r.GetMemoryLimitInBytes())
	if q, p := r.GetCpuQuota(), r.GetCpuPeriod(); q > 0 {
		if p <= 0 {
			p = 100000
		}
		out.CPUMillis = max(1, q*1000/p)
	}
	if sh := r.GetCpuShares(); sh >= 2 {
		out.CPUShares = uint64(sh)
	}
	return out
}

// UpdateContainerResources applies new limits to a container's cgroup.
func (s *Server) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	c, sb, err := s.lookContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	res := req.GetLinux()
	if res == nil {
		return &runtimeapi.UpdateContainerResourcesResponse{}, nil
	}
	l := s.sandboxLock(sb.ID)
	l.Lock()
	defer l.Unlock()
	if err := s.rt.UpdateApp(ctx, sb.ID, c.App, appResources(res)); err != nil {
		return nil, grpcError(fmt.Errorf("UpdateContainerResources %s: %w", c.ID, err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c.resources = res
	if err := s.store.saveContainer(c); err != nil {
		return nil, grpcError(err)
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}

// clampOOMScoreAdj is adj, or the lowest value this process may set when
// adj is lower: without CAP_SYS_RESOURCE a process may not lower
// oom_score_adj below its own (kubelet asks -997 of guaranteed
// containers). Clamping is logged once and never fails.
func (s *Server) clampOOMScoreAdj(adj int) int {
	s.oomOnce.Do(func() {
		s.oomMin = -1000
		if hasCapSysResource() {
			return
		}
		b, _ := os.ReadFile("/proc/self/oom_score_adj")
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			s.oomMin = n
		}
	})
	if adj >= s.oomMin {
		return adj
	}
	s.oomLogged.Do(func() {
		s.log.Warn("cri: this process lacks CAP_SYS_RESOURCE, so containers' oom_score_adj is raised to the lowest it may set (logged once)", "asked", adj, "set", s.oomMin)
	})
	return s.oomMin
}

// hasCapSysResource reports whether this process holds CAP_SYS_RESOURCE
// (bit 24 of CapEff).
func hasCapSysResource() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && n&(1<<24) != 0
		}
	}
	return false
}

// UpdatePodSandboxResources accepts a sandbox's new resources: karman
// limits its containers' cgroups (UpdateContainerResources), and the pod
// level is kubelet's own cgroup, the sandbox's cgroup_parent; the pod's
// cgroup between them has no limits to change.
func (s *Server) UpdatePodSandboxResources(_ context.Context, req *runtimeapi.UpdatePodSandboxResourcesRequest) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	s.mu.Lock()
	_, err := s.findSandboxLocked(req.GetPodSandboxId())
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
}
