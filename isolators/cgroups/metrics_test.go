package cgroups

import (
	"testing"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/google/go-cmp/cmp"
)

// TestMetricsFromV1: v1's counters as Metrics; memsw counts memory too,
// so swap is its excess; the working set leaves out inactive page cache.
func TestMetricsFromV1(t *testing.T) {
	got := metricsFromV1(&v1stats.Metrics{
		CPU: &v1stats.CPUStat{Usage: &v1stats.CPUUsage{Total: 30, User: 20, Kernel: 10},
			Throttling: &v1stats.Throttle{Periods: 5, ThrottledPeriods: 2, ThrottledTime: 7}},
		Memory: &v1stats.MemoryStat{
			TotalCache: 100, TotalRSS: 200, TotalMappedFile: 50, TotalInactiveFile: 40, TotalPgFault: 9, TotalPgMajFault: 1,
			Usage:  &v1stats.MemoryEntry{Usage: 300, Max: 400, Failcnt: 3},
			Swap:   &v1stats.MemoryEntry{Usage: 350},
			Kernel: &v1stats.MemoryEntry{Usage: 8},
		},
		MemoryOomControl: &v1stats.MemoryOomControl{OomKill: 1},
		Pids:             &v1stats.PidsStat{Current: 4, Limit: 100},
		Blkio: &v1stats.BlkIOStat{
			IoServiceBytesRecursive: []*v1stats.BlkIOEntry{{Op: "Read", Major: 8, Value: 1000}, {Op: "Write", Major: 8, Value: 500}, {Op: "Total", Major: 8, Value: 1500}},
			IoServicedRecursive:     []*v1stats.BlkIOEntry{{Op: "Read", Major: 8, Value: 10}, {Op: "Write", Major: 8, Value: 5}},
		},
	})
	want := Metrics{CPUUsageNs: 30, CPUUserNs: 20, CPUSystemNs: 10, CFSPeriods: 5, CFSThrottledPeriods: 2, CFSThrottledNs: 7,
		MemoryUsage: 300, MemoryMaxUsage: 400, MemoryWorkingSet: 260, MemoryCache: 100, MemoryRSS: 200, MemoryMappedFile: 50,
		MemorySwap: 50, MemoryKernel: 8, MemoryFailcnt: 3, PgFault: 9, PgMajFault: 1, OOMKills: 1, Pids: 4, PidsLimit: 100,
		IO: []IOStat{{Major: 8, ReadBytes: 1000, WriteBytes: 500, Reads: 10, Writes: 5}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metricsFromV1 (-want +got):\n%s", diff)
	}
}

// TestMetricsFromV2: v2's counters (µs become ns) as Metrics.
func TestMetricsFromV2(t *testing.T) {
	got := metricsFromV2(&v2stats.Metrics{
		CPU: &v2stats.CPUStat{UsageUsec: 3, UserUsec: 2, SystemUsec: 1, NrPeriods: 5, NrThrottled: 2, ThrottledUsec: 7},
		Memory: &v2stats.MemoryStat{Usage: 300, MaxUsage: 400, InactiveFile: 40, File: 100, Anon: 200, FileMapped: 50,
			SwapUsage: 20, KernelStack: 3, Slab: 5, Pgfault: 9, Pgmajfault: 1},
		MemoryEvents: &v2stats.MemoryEvents{Max: 3, OomKill: 1},
		Pids:         &v2stats.PidsStat{Current: 4, Limit: 100},
		Io:           &v2stats.IOStat{Usage: []*v2stats.IOEntry{{Major: 8, Minor: 1, Rbytes: 1000, Wbytes: 500, Rios: 10, Wios: 5}}},
	})
	want := Metrics{CPUUsageNs: 3000, CPUUserNs: 2000, CPUSystemNs: 1000, CFSPeriods: 5, CFSThrottledPeriods: 2, CFSThrottledNs: 7000,
		MemoryUsage: 300, MemoryMaxUsage: 400, MemoryWorkingSet: 260, MemoryCache: 100, MemoryRSS: 200, MemoryMappedFile: 50,
		MemorySwap: 20, MemoryKernel: 8, MemoryFailcnt: 3, PgFault: 9, PgMajFault: 1, OOMKills: 1, Pids: 4, PidsLimit: 100,
		IO: []IOStat{{Major: 8, Minor: 1, ReadBytes: 1000, WriteBytes: 500, Reads: 10, Writes: 5}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metricsFromV2 (-want +got):\n%s", diff)
	}
}
