package cgroups

import (
	"fmt"

	"github.com/containerd/cgroups/v3/cgroup1"
	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
)

// Metrics are an app's cgroup counters in detail (what the CRI's metrics
// report, under cadvisor's names), in bytes and nanoseconds.
type Metrics struct {
	CPUUsageNs, CPUUserNs, CPUSystemNs              uint64
	CFSPeriods, CFSThrottledPeriods, CFSThrottledNs uint64
	MemoryUsage, MemoryMaxUsage, MemoryWorkingSet   uint64
	MemoryCache, MemoryRSS, MemoryMappedFile        uint64
	MemorySwap, MemoryKernel, MemoryFailcnt         uint64
	PgFault, PgMajFault, OOMKills                   uint64
	Pids, PidsLimit, Threads                        uint64
	// IO is the block I/O by device.
	IO []IOStat
	// Procs are the PIDs of the app's processes.
	Procs []int
}

// IOStat is the block I/O of a cgroup on one device.
type IOStat struct {
	Major, Minor                         uint64
	ReadBytes, WriteBytes, Reads, Writes uint64
}

// Metrics reads the app's counters in detail.
func (a *App) Metrics() (Metrics, error) {
	if a.v2 != nil {
		m, err := a.v2.Stat()
		if err != nil {
			return Metrics{}, fmt.Errorf("cgroups: stats %s: %w", a.path, err)
		}
		out := metricsFromV2(m)
		if procs, err := a.v2.Procs(false); err == nil {
			for _, p := range procs {
				out.Procs = append(out.Procs, int(p))
			}
		}
		if th, err := a.v2.Threads(false); err == nil {
			out.Threads = uint64(len(th))
		}
		return out, nil
	}
	m, err := a.v1.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return Metrics{}, fmt.Errorf("cgroups: stats %s: %w", a.path, err)
	}
	out := metricsFromV1(m)
	if procs, err := a.v1.Processes(cgroup1.Pids, false); err == nil {
		for _, p := range procs {
			out.Procs = append(out.Procs, p.Pid)
		}
	}
	if tasks, err := a.v1.Tasks(cgroup1.Pids, false); err == nil {
		out.Threads = uint64(len(tasks))
	}
	return out, nil
}

func metricsFromV1(m *v1stats.Metrics) Metrics {
	var out Metrics
	if c := m.GetCPU(); c != nil {
		out.CPUUsageNs, out.CPUUserNs, out.CPUSystemNs = c.GetUsage().GetTotal(), c.GetUsage().GetUser(), c.GetUsage().GetKernel()
		t := c.GetThrottling()
		out.CFSPeriods, out.CFSThrottledPeriods, out.CFSThrottledNs = t.GetPeriods(), t.GetThrottledPeriods(), t.GetThrottledTime()
	}
	if mem := m.GetMemory(); mem != nil {
		u := mem.GetUsage()
		out.MemoryUsage, out.MemoryMaxUsage, out.MemoryFailcnt = u.GetUsage(), u.GetMax(), u.GetFailcnt()
		out.MemoryWorkingSet = out.MemoryUsage - min(out.MemoryUsage, mem.GetTotalInactiveFile())
		out.MemoryCache, out.MemoryRSS, out.MemoryMappedFile = mem.GetTotalCache(), mem.GetTotalRSS(), mem.GetTotalMappedFile()
		out.MemorySwap = mem.GetSwap().GetUsage() - min(mem.GetSwap().GetUsage(), out.MemoryUsage) // memsw counts memory too
		out.MemoryKernel = mem.GetKernel().GetUsage()
		out.PgFault, out.PgMajFault = mem.GetTotalPgFault(), mem.GetTotalPgMajFault()
	}
	out.OOMKills = m.GetMemoryOomControl().GetOomKill()
	out.Pids, out.PidsLimit = m.GetPids().GetCurrent(), m.GetPids().GetLimit()
	byDev := map[[2]uint64]*IOStat{}
	dev := func(e *v1stats.BlkIOEntry) *IOStat {
		k := [2]uint64{e.GetMajor(), e.GetMinor()}
		if byDev[k] == nil {
			out.IO = append(out.IO, IOStat{Major: k[0], Minor: k[1]})
			byDev[k] = &out.IO[len(out.IO)-1]
		}
		return byDev[k]
	}
	for _, e := range m.GetBlkio().GetIoServiceBytesRecursive() {
		switch e.GetOp() {
		case "Read":
			dev(e).ReadBytes += e.GetValue()
		case "Write":
			dev(e).WriteBytes += e.GetValue()
		}
	}
	for _, e := range m.GetBlkio().GetIoServicedRecursive() {
		switch e.GetOp() {
		case "Read":
			dev(e).Reads += e.GetValue()
		case "Write":
			dev(e).Writes += e.GetValue()
		}
	}
	return out
}

func metricsFromV2(m *v2stats.Metrics) Metrics {
	var out Metrics
	if c := m.GetCPU(); c != nil {
		out.CPUUsageNs, out.CPUUserNs, out.CPUSystemNs = 1000*c.GetUsageUsec(), 1000*c.GetUserUsec(), 1000*c.GetSystemUsec()
		out.CFSPeriods, out.CFSThrottledPeriods, out.CFSThrottledNs = c.GetNrPeriods(), c.GetNrThrottled(), 1000*c.GetThrottledUsec()
	}
	if mem := m.GetMemory(); mem != nil {
		out.MemoryUsage, out.MemoryMaxUsage = mem.GetUsage(), mem.GetMaxUsage()
		out.MemoryWorkingSet = out.MemoryUsage - min(out.MemoryUsage, mem.GetInactiveFile())
		out.MemoryCache, out.MemoryRSS, out.MemoryMappedFile = mem.GetFile(), mem.GetAnon(), mem.GetFileMapped()
		out.MemorySwap = mem.GetSwapUsage()
		out.MemoryKernel = mem.GetKernelStack() + mem.GetSlab()
		out.PgFault, out.PgMajFault = mem.GetPgfault(), mem.GetPgmajfault()
	}
	out.MemoryFailcnt, out.OOMKills = m.GetMemoryEvents().GetMax(), m.GetMemoryEvents().GetOomKill()
	out.Pids, out.PidsLimit = m.GetPids().GetCurrent(), m.GetPids().GetLimit()
	for _, e := range m.GetIo().GetUsage() {
		out.IO = append(out.IO, IOStat{Major: e.GetMajor(), Minor: e.GetMinor(), ReadBytes: e.GetRbytes(), WriteBytes: e.GetWbytes(), Reads: e.GetRios(), Writes: e.GetWios()})
	}
	return out
}
