package agentapi

import (
	_ "embed"
	"time"
)

// OpenAPI is the OpenAPI 3 document of the API (openapi.json), served by
// the agent at /v1/openapi.json; docs/agent-openapi.json links to it.
//
//go:embed openapi.json
var OpenAPI []byte

// Node is GET /v1/node: what a master needs to place tasks on the node.
type Node struct {
	Identity     Identity          `json:"identity"`
	Capacity     Resources         `json:"capacity"`
	Reserved     Resources         `json:"reserved"`
	Allocatable  Resources         `json:"allocatable"`
	Allocated    Resources         `json:"allocated"`
	Usage        Usage             `json:"usage"`
	Attributes   map[string]string `json:"attributes"`
	Labels       map[string]string `json:"labels"`
	Networks     []string          `json:"networks"`
	Conditions   []Condition       `json:"conditions"`
	Tasks        map[TaskState]int `json:"tasks"`
	LastSequence uint64            `json:"lastSequence"`
}

// Identity names the node and its software.
type Identity struct {
	ID             string `json:"id"`
	Hostname       string `json:"hostname"`
	BootID         string `json:"bootId"`
	OS             string `json:"os"`
	Kernel         string `json:"kernel"`
	Arch           string `json:"arch"`
	CgroupMode     string `json:"cgroupMode"`
	RuntimeVersion string `json:"runtimeVersion"`
}

// Resources is an amount of the node's resources. In Node.Capacity the
// ports are the dynamic port range; elsewhere Ports is unused.
type Resources struct {
	CPUMillis   int64       `json:"cpuMillis"`
	CPUCores    int         `json:"cpuCores,omitempty"`
	CPUMHz      int         `json:"cpuMHz,omitempty"`
	MemoryBytes int64       `json:"memoryBytes"`
	DiskBytes   int64       `json:"diskBytes,omitempty"`
	Ports       []PortRange `json:"ports,omitempty"`
}

// PortRange is an inclusive range of ports.
type PortRange struct {
	From int `json:"from"`
	To   int `json:"to"`
}

// Usage is the node's live usage: the tasks' cgroups and the host.
type Usage struct {
	TasksCPUSeconds     float64 `json:"tasksCpuSeconds"`
	TasksMemoryBytes    int64   `json:"tasksMemoryBytes"`
	TasksPids           int64   `json:"tasksPids"`
	HostMemoryAvailable int64   `json:"hostMemoryAvailableBytes"`
	HostDiskFree        int64   `json:"hostDiskFreeBytes"`
	HostLoad1           float64 `json:"hostLoad1"`
	// HostProcesses counts the host's processes, not their threads.
	HostProcesses int64 `json:"hostProcesses"`
	// Sampled is when the figures were read (they are refreshed every
	// few seconds, not on each request).
	Sampled time.Time `json:"sampled"`
}

// Condition is one of Ready, MemoryPressure, DiskPressure, PIDPressure.
type Condition struct {
	Type           string    `json:"type"`
	Status         bool      `json:"status"`
	Reason         string    `json:"reason"`
	Message        string    `json:"message,omitempty"`
	LastTransition time.Time `json:"lastTransition"`
}

// TaskSpec is the body of PUT /v1/tasks/{id}: what to run.
type TaskSpec struct {
	Image string `json:"image"`
	// Command replaces the image's entrypoint, Args its cmd.
	Command    []string          `json:"command,omitempty"`
	Args       []string          `json:"args,omitempty"`
	Env        map[string]string `json:"env,omitempty"`
	User       string            `json:"user,omitempty"`
	WorkingDir string            `json:"workingDir,omitempty"`
	Resources  TaskResources     `json:"resources,omitzero"`
	// Networks are network names: "none" (the default), "host", or
	// "default" (karman's bridge network) or configured CNI networks (see
	// Node.Networks).
	Networks []string `json:"networks,omitempty"`
	Ports    []Port   `json:"ports,omitempty"`
	Volumes  []Volume `json:"volumes,omitempty"`
	// Restart is "never" (the default), "on-failure" or "always".
	Restart string            `json:"restart,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	// StopTimeout is the grace period between SIGTERM and SIGKILL when
	// the task is stopped, as a Go duration ("10s"); default 10s.
	StopTimeout string `json:"stopTimeout,omitempty"`
}

// TaskResources are a task's requests, which are also its limits.
type TaskResources struct {
	CPUMillis   int64 `json:"cpuMillis,omitempty"`
	MemoryBytes int64 `json:"memoryBytes,omitempty"`
	Pids        int64 `json:"pids,omitempty"`
}

// Port asks for a host port to reach a port of the task.
type Port struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"` // tcp (default) or udp
}

// Volume bind-mounts a host path, which must be under one of the agent's
// allowed volume directories.
type Volume struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// TaskState is where a task is in its life.
type TaskState string

// Task states. A task moves from starting to running and ends exited
// (its apps ended; see ExitCode), failed (it could not be started) or
// lost (the node rebooted, or its pod vanished).
const (
	TaskStarting TaskState = "starting"
	TaskRunning  TaskState = "running"
	TaskExited   TaskState = "exited"
	TaskFailed   TaskState = "failed"
	TaskLost     TaskState = "lost"
)

// Terminal tells whether a task in state s has ended for good.
func (s TaskState) Terminal() bool {
	return s == TaskExited || s == TaskFailed || s == TaskLost
}

// Task is a task as the agent reports it.
type Task struct {
	ID       string    `json:"id"`
	Spec     TaskSpec  `json:"spec"`
	State    TaskState `json:"state"`
	PodUUID  string    `json:"podUuid,omitempty"`
	Created  time.Time `json:"created"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	ExitCode *int      `json:"exitCode,omitempty"`
	// Reason explains failed and lost tasks and unusual exits
	// ("oom-killed", "killed by SIGKILL", ...).
	Reason   string `json:"reason,omitempty"`
	Restarts int    `json:"restarts,omitempty"`
	BootID   string `json:"bootId"`
}

// TaskStats is GET /v1/tasks/{id}/stats: the task's cgroup usage.
type TaskStats struct {
	ID               string  `json:"id"`
	CPUSeconds       float64 `json:"cpuSeconds"`
	MemoryBytes      uint64  `json:"memoryBytes"`
	MemoryPeakBytes  uint64  `json:"memoryPeakBytes"`
	Pids             uint64  `json:"pids"`
	ThrottledPeriods uint64  `json:"throttledPeriods"`
	OOMKills         uint64  `json:"oomKills"`
}

// SignalRequest is the body of POST /v1/tasks/{id}/signal.
type SignalRequest struct {
	// Signal is a name (HUP, SIGUSR1, ...) or a number.
	Signal string `json:"signal"`
}

// StopRequest is the body of POST /v1/tasks/{id}/stop (optional).
type StopRequest struct {
	// Grace is how long the task gets after SIGTERM before SIGKILL, as a
	// Go duration; default the task's StopTimeout.
	Grace string `json:"grace,omitempty"`
}

// Event types.
const (
	EventAgentStarted = "agent-started"
	EventTaskStarting = "task-starting"
	EventTaskRunning  = "task-running"
	EventTaskExited   = "task-exited"
	EventTaskFailed   = "task-failed"
	EventTaskLost     = "task-lost"
	EventTaskDeleted  = "task-deleted"
	EventNodeUpdated  = "node-updated"
)

// Event is one line of GET /v1/events. Seq increases by one per event and
// survives agent restarts.
type Event struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Type     string    `json:"type"`
	Task     string    `json:"task,omitempty"`
	PodUUID  string    `json:"podUuid,omitempty"`
	ExitCode *int      `json:"exitCode,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Message  string    `json:"message,omitempty"`
}

// Error is the body of every error response.
type Error struct {
	Error string `json:"error"`
	// Problems lists every problem of an invalid request (400).
	Problems []string `json:"problems,omitempty"`
}

// Health is GET /v1/health.
type Health struct {
	Status  string `json:"status"` // "ok"
	Version string `json:"version"`
}

// Registration is what the agent sends a master (PUT
// {master}/v1/nodes/{id}) when it registers and at each heartbeat; see
// the OpenAPI document.
type Registration struct {
	Node Node `json:"node"`
	// Endpoint is where the master can reach the agent, if it listens on
	// TCP.
	Endpoint string `json:"endpoint,omitempty"`
}

// RegistrationReply is the master's answer; HeartbeatSeconds, when set,
// is how often it wants heartbeats.
type RegistrationReply struct {
	HeartbeatSeconds int `json:"heartbeatSeconds,omitempty"`
}
