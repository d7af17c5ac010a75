package cri

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/isolators/cgroups"
	"github.com/karman-project/karman/stage1/poddir"
)

// The CRI's metrics (ListMetricDescriptors, ListPodSandboxMetrics), under
// cadvisor's names, read from the apps' cgroups (isolators/cgroups
// Metrics), their processes' /proc entries, their writable layers, and
// the pod's network namespace. Every metric carries baseLabels, some
// more (metricDef.labels); values are whole units, as the CRI's integer
// values allow.

var baseLabels = []string{"container", "id", "image", "name", "namespace", "pod"}

type metricDef struct {
	name, help string
	counter    bool
	labels     []string // beyond baseLabels
}

var metricDefs = []metricDef{
	{"container_blkio_device_usage_total", "Blkio device bytes usage", true, []string{"device", "major", "minor", "operation"}},
	{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", true, nil},
	{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", true, nil},
	{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", true, nil},
	{"container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", true, nil},
	{"container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", true, nil},
	{"container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", true, nil},
	{"container_file_descriptors", "Number of open file descriptors for the container.", false, nil},
	{"container_fs_inodes_free", "Number of available Inodes", false, []string{"device"}},
	{"container_fs_inodes_total", "Number of Inodes", false, []string{"device"}},
	{"container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", false, []string{"device"}},
	{"container_fs_reads_bytes_total", "Cumulative count of bytes read", true, []string{"device"}},
	{"container_fs_reads_total", "Cumulative count of reads completed", true, []string{"device"}},
	{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", false, []string{"device"}},
	{"container_fs_writes_bytes_total", "Cumulative count of bytes written", true, []string{"device"}},
	{"container_fs_writes_total", "Cumulative count of writes completed", true, []string{"device"}},
	{"container_last_seen", "Last time a container was seen by the exporter", false, nil},
	{"container_memory_cache", "Number of bytes of page cache memory.", false, nil},
	{"container_memory_failcnt", "Number of memory usage hits limits", true, nil},
	{"container_memory_failures_total", "Cumulative count of memory allocation failures.", true, []string{"failure_type", "scope"}},
	{"container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", false, nil},
	{"container_memory_mapped_file", "Size of memory mapped files in bytes.", false, nil},
	{"container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes", false, nil},
	{"container_memory_rss", "Size of RSS in bytes.", false, nil},
	{"container_memory_swap", "Container swap usage in bytes.", false, nil},
	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", false, nil},
	{"container_memory_working_set_bytes", "Current working set in bytes.", false, nil},
	{"container_network_receive_bytes_total", "Cumulative count of bytes received", true, []string{"interface"}},
	{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving", true, []string{"interface"}},
	{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving", true, []string{"interface"}},
	{"container_network_receive_packets_total", "Cumulative count of packets received", true, []string{"interface"}},
	{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", true, []string{"interface"}},
	{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting", true, []string{"interface"}},
	{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting", true, []string{"interface"}},
	{"container_network_transmit_packets_total", "Cumulative count of packets transmitted", true, []string{"interface"}},
	{"container_oom_events_total", "Count of out of memory events observed for the container", true, nil},
	{"container_processes", "Number of processes running inside the container.", false, nil},
	{"container_sockets", "Number of open sockets for the container.", false, nil},
	{"container_spec_cpu_period", "CPU period of the container.", false, nil},
	{"container_spec_cpu_quota", "CPU quota of the container.", false, nil},
	{"container_spec_cpu_shares", "CPU share of the container.", false, nil},
	{"container_spec_memory_limit_bytes", "Memory limit for the container.", false, nil},
	{"container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", false, nil},
	{"container_start_time_seconds", "Start time of the container since unix epoch in seconds.", false, nil},
	{"container_threads", "Number of threads running inside the container", false, nil},
	{"container_threads_max", "Maximum number of threads allowed inside the container, infinity if value is zero", false, nil},
}

var metricTypes = func() map[string]runtimeapi.MetricType {
	m := map[string]runtimeapi.MetricType{}
	for _, d := range metricDefs {
		if d.counter {
			m[d.name] = runtimeapi.MetricType_COUNTER
		} else {
			m[d.name] = runtimeapi.MetricType_GAUGE
		}
	}
	return m
}()

// ListMetricDescriptors lists the metrics ListPodSandboxMetrics reports.
func (s *Server) ListMetricDescriptors(context.Context, *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	out := make([]*runtimeapi.MetricDescriptor, 0, len(metricDefs))
	for _, d := range metricDefs {
		out = append(out, &runtimeapi.MetricDescriptor{Name: d.name, Help: d.help, LabelKeys: append(append([]string{}, baseLabels...), d.labels...)})
	}
	return &runtimeapi.ListMetricDescriptorsResponse{Descriptors: out}, nil
}

// ListPodSandboxMetrics reports the metrics of every ready sandbox: its
// network's at the sandbox's level, the others for each running
// container.
func (s *Server) ListPodSandboxMetrics(ctx context.Context, _ *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	s.mu.Lock()
	var sbs []*sandboxRecord
	for _, sb := range s.sandboxes {
		if !sb.Stopped {
			sbs = append(sbs, sb)
		}
	}
	s.mu.Unlock()
	now := time.Now()
	out := []*runtimeapi.PodSandboxMetrics{}
	for _, sb := range sbs {
		ms, err := s.rt.AppMetrics(ctx, sb.ID)
		if err != nil {
			continue
		}
		dir, _ := s.rt.PodDir(sb.ID)
		md := sb.config.GetMetadata()
		pm := &runtimeapi.PodSandboxMetrics{PodSandboxId: sb.ID, Metrics: []*runtimeapi.Metric{}, ContainerMetrics: []*runtimeapi.ContainerMetrics{}}
		pb := metricsBuilder{ts: now.UnixNano(), base: []string{"POD", sb.ID, "", podName(md), md.GetNamespace(), md.GetName()}}
		pb.network(dir)
		pm.Metrics = pb.out
		apps, _ := s.rt.ListApps(ctx, sb.ID)
		started := map[string]time.Time{}
		for _, a := range apps {
			started[a.Name] = a.Started
		}
		for _, c := range s.filterContainers("", sb.ID, nil) {
			m, ok := ms[c.App]
			if !ok {
				continue
			}
			b := metricsBuilder{ts: now.UnixNano(), base: []string{c.config.GetMetadata().GetName(), c.ID, c.Image, c.App, md.GetNamespace(), md.GetName()}}
			layer := filepath.Join(dir, "apps", c.App, "upper")
			if _, err := os.Stat(layer); err != nil {
				layer = filepath.Join(dir, "apps", c.App, "rootfs") // a copy, not an overlay
			}
			b.container(c, m, layer, started[c.App], now)
			pm.ContainerMetrics = append(pm.ContainerMetrics, &runtimeapi.ContainerMetrics{ContainerId: c.ID, Metrics: b.out})
		}
		out = append(out, pm)
	}
	return &runtimeapi.ListPodSandboxMetricsResponse{PodMetrics: out}, nil
}

type metricsBuilder struct {
	ts   int64
	base []string
	out  []*runtimeapi.Metric
}

func (b *metricsBuilder) add(name string, v uint64, labels ...string) {
	b.out = append(b.out, &runtimeapi.Metric{Name: name, Timestamp: b.ts, MetricType: metricTypes[name],
		LabelValues: append(append([]string{}, b.base...), labels...), Value: &runtimeapi.UInt64Value{Value: v}})
}

func (b *metricsBuilder) container(c *containerRecord, m cgroups.Metrics, upper string, started, now time.Time) {
	const s = uint64(time.Second)
	b.add("container_cpu_usage_seconds_total", m.CPUUsageNs/s)
	b.add("container_cpu_user_seconds_total", m.CPUUserNs/s)
	b.add("container_cpu_system_seconds_total", m.CPUSystemNs/s)
	b.add("container_cpu_cfs_periods_total", m.CFSPeriods)
	b.add("container_cpu_cfs_throttled_periods_total", m.CFSThrottledPeriods)
	b.add("container_cpu_cfs_throttled_seconds_total", m.CFSThrottledNs/s)
	b.add("container_memory_usage_bytes", m.MemoryUsage)
	b.add("container_memory_working_set_bytes", m.MemoryWorkingSet)
	b.add("container_memory_max_usage_bytes", m.MemoryMaxUsage)
	b.add("container_memory_cache", m.MemoryCache)
	b.add("container_memory_rss", m.MemoryRSS)
	b.add("container_memory_mapped_file", m.MemoryMappedFile)
	b.add("container_memory_swap", m.MemorySwap)
	b.add("container_memory_kernel_usage", m.MemoryKernel)
	b.add("container_memory_failcnt", m.MemoryFailcnt)
	b.add("container_memory_failures_total", m.PgFault, "pgfault", "container")
	b.add("container_memory_failures_total", m.PgMajFault, "pgmajfault", "container")
	b.add("container_oom_events_total", m.OOMKills)
	b.add("container_processes", uint64(len(m.Procs)))
	b.add("container_threads", m.Threads)
	b.add("container_threads_max", m.PidsLimit)
	fds, sockets := openFiles(m.Procs)
	b.add("container_file_descriptors", fds)
	b.add("container_sockets", sockets)
	for _, io := range m.IO {
		maj, mnr := strconv.FormatUint(io.Major, 10), strconv.FormatUint(io.Minor, 10)
		dev := maj + ":" + mnr
		b.add("container_blkio_device_usage_total", io.ReadBytes, dev, maj, mnr, "Read")
		b.add("container_blkio_device_usage_total", io.WriteBytes, dev, maj, mnr, "Write")
		b.add("container_fs_reads_bytes_total", io.ReadBytes, dev)
		b.add("container_fs_reads_total", io.Reads, dev)
		b.add("container_fs_writes_bytes_total", io.WriteBytes, dev)
		b.add("container_fs_writes_total", io.Writes, dev)
	}
	used, _ := diskUsage(upper)
	b.add("container_fs_usage_bytes", used, upper)
	var st unix.Statfs_t
	if unix.Statfs(upper, &st) == nil {
		b.add("container_fs_limit_bytes", st.Blocks*uint64(st.Bsize), upper)
		b.add("container_fs_inodes_total", st.Files, upper)
		b.add("container_fs_inodes_free", st.Ffree, upper)
	}
	res := c.currentResources()
	b.add("container_spec_cpu_period", uint64(max(0, res.GetCpuPeriod())))
	b.add("container_spec_cpu_quota", uint64(max(0, res.GetCpuQuota())))
	b.add("container_spec_cpu_shares", uint64(max(0, res.GetCpuShares())))
	b.add("container_spec_memory_limit_bytes", uint64(max(0, res.GetMemoryLimitInBytes())))
	b.add("container_spec_memory_swap_limit_bytes", uint64(max(0, res.GetMemorySwapLimitInBytes())))
	if !started.IsZero() {
		b.add("container_start_time_seconds", uint64(started.Unix()))
	}
	b.add("container_last_seen", uint64(now.Unix()))
}

// openFiles counts the open files of procs, and those that are sockets.
func openFiles(procs []int) (fds, sockets uint64) {
	for _, pid := range procs {
		dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			fds++
			if t, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(t, "socket:") {
				sockets++
			}
		}
	}
	return fds, sockets
}

// network reports the counters of the interfaces of the pod's network
// namespace.
func (b *metricsBuilder) network(podDir string) {
	for _, d := range podNetDev(podDir) {
		b.add("container_network_receive_bytes_total", d.rxBytes, d.name)
		b.add("container_network_receive_packets_total", d.rxPackets, d.name)
		b.add("container_network_receive_errors_total", d.rxErrors, d.name)
		b.add("container_network_receive_packets_dropped_total", d.rxDropped, d.name)
		b.add("container_network_transmit_bytes_total", d.txBytes, d.name)
		b.add("container_network_transmit_packets_total", d.txPackets, d.name)
		b.add("container_network_transmit_errors_total", d.txErrors, d.name)
		b.add("container_network_transmit_packets_dropped_total", d.txDropped, d.name)
	}
}

// netDev is one interface's counters (/proc/net/dev).
type netDev struct {
	name                                    string
	rxBytes, rxPackets, rxErrors, rxDropped uint64
	txBytes, txPackets, txErrors, txDropped uint64
}

// podNetDev reads the interfaces of the pod's network namespace (its
// init's /proc/PID/net/dev), loopback aside.
func podNetDev(podDir string) []netDev {
	pb, err := os.ReadFile(filepath.Join(podDir, poddir.InitPID))
	if err != nil {
		return nil
	}
	f, err := os.Open(filepath.Join("/proc", strings.TrimSpace(string(pb)), "net", "dev"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []netDev
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		name = strings.TrimSpace(name)
		if !ok || name == "lo" {
			continue
		}
		v := strings.Fields(rest)
		if len(v) < 16 {
			continue
		}
		n := func(i int) uint64 { x, _ := strconv.ParseUint(v[i], 10, 64); return x }
		out = append(out, netDev{name: name, rxBytes: n(0), rxPackets: n(1), rxErrors: n(2), rxDropped: n(3),
			txBytes: n(8), txPackets: n(9), txErrors: n(10), txDropped: n(11)})
	}
	return out
}
