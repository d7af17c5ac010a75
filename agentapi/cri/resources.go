package cri

import (
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
