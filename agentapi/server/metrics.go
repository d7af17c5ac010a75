package server

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/karman-project/karman/agentapi"
)

// latencyBuckets are the upper bounds (seconds) of the API latency
// histogram.
var latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// metrics are the agent's counters, written in the Prometheus text format
// (version 0.0.4) by hand: a handful of series do not need a client
// library.
type metrics struct {
	launches, launchFailures, admissionRefusals atomic.Int64

	mu       sync.Mutex
	requests map[string]*histogram // by route
}

type histogram struct {
	counts []int64 // per bucket, cumulative when written
	sum    float64
	n      int64
	codes  map[int]int64
}

func newMetrics() *metrics { return &metrics{requests: map[string]*histogram{}} }

func (m *metrics) observe(route string, code int, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.requests[route]
	if h == nil {
		h = &histogram{counts: make([]int64, len(latencyBuckets)), codes: map[int]int64{}}
		m.requests[route] = h
	}
	s := d.Seconds()
	for i, b := range latencyBuckets {
		if s <= b {
			h.counts[i]++
			break
		}
	}
	h.sum += s
	h.n++
	h.codes[code]++
}

// write writes every series.
func (a *Agent) writeMetrics(w io.Writer) {
	n := a.Node()
	m := a.met
	fmt.Fprintln(w, "# HELP karman_agent_tasks Tasks by state.\n# TYPE karman_agent_tasks gauge")
	for _, st := range []agentapi.TaskState{agentapi.TaskStarting, agentapi.TaskRunning, agentapi.TaskExited, agentapi.TaskFailed, agentapi.TaskLost} {
		fmt.Fprintf(w, "karman_agent_tasks{state=%q} %d\n", st, n.Tasks[st])
	}
	counter := func(name, help string, v int64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	counter("karman_agent_launches_total", "Pod launches (first starts and restarts).", m.launches.Load())
	counter("karman_agent_launch_failures_total", "Launches that failed to start a pod.", m.launchFailures.Load())
	counter("karman_agent_admission_refusals_total", "Launches refused because they did not fit.", m.admissionRefusals.Load())
	gauge := func(name, help string, v any) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %v\n", name, help, name, name, v)
	}
	gauge("karman_node_allocatable_cpu_millis", "CPU tasks may use, in millicores.", n.Allocatable.CPUMillis)
	gauge("karman_node_allocatable_memory_bytes", "Memory tasks may use.", n.Allocatable.MemoryBytes)
	gauge("karman_node_allocated_cpu_millis", "CPU requested by live tasks.", n.Allocated.CPUMillis)
	gauge("karman_node_allocated_memory_bytes", "Memory requested by live tasks.", n.Allocated.MemoryBytes)
	gauge("karman_node_tasks_memory_bytes", "Memory used by the tasks' cgroups.", n.Usage.TasksMemoryBytes)
	fmt.Fprintf(w, "# HELP karman_node_tasks_cpu_seconds_total CPU time used by the running tasks' cgroups.\n# TYPE karman_node_tasks_cpu_seconds_total counter\nkarman_node_tasks_cpu_seconds_total %g\n", n.Usage.TasksCPUSeconds)
	gauge("karman_node_memory_available_bytes", "MemAvailable of the host.", n.Usage.HostMemoryAvailable)
	gauge("karman_node_load1", "One-minute load average of the host.", n.Usage.HostLoad1)
	gauge("karman_agent_event_sequence", "Sequence number of the last event.", n.LastSequence)

	m.mu.Lock()
	defer m.mu.Unlock()
	routes := make([]string, 0, len(m.requests))
	for r := range m.requests {
		routes = append(routes, r)
	}
	sort.Strings(routes)
	fmt.Fprintln(w, "# HELP karman_agent_api_requests_total API requests by route and status.\n# TYPE karman_agent_api_requests_total counter")
	for _, r := range routes {
		codes := make([]int, 0)
		for c := range m.requests[r].codes {
			codes = append(codes, c)
		}
		sort.Ints(codes)
		for _, c := range codes {
			fmt.Fprintf(w, "karman_agent_api_requests_total{route=%q,code=\"%d\"} %d\n", r, c, m.requests[r].codes[c])
		}
	}
	fmt.Fprintln(w, "# HELP karman_agent_api_request_duration_seconds API latency by route.\n# TYPE karman_agent_api_request_duration_seconds histogram")
	for _, r := range routes {
		h := m.requests[r]
		var cum int64
		for i, b := range latencyBuckets {
			cum += h.counts[i]
			fmt.Fprintf(w, "karman_agent_api_request_duration_seconds_bucket{route=%q,le=\"%g\"} %d\n", r, b, cum)
		}
		fmt.Fprintf(w, "karman_agent_api_request_duration_seconds_bucket{route=%q,le=\"+Inf\"} %d\n", r, h.n)
		fmt.Fprintf(w, "karman_agent_api_request_duration_seconds_sum{route=%q} %g\n", r, h.sum)
		fmt.Fprintf(w, "karman_agent_api_request_duration_seconds_count{route=%q} %d\n", r, h.n)
	}
}
