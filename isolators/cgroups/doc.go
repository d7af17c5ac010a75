// Package cgroups gives each pod one cgroup, <parent>/<uuid>, with one child cgroup per app,
// on cgroup v1, hybrid and v2 (unified) hosts. It is built on containerd/cgroups/v3: package
// cgroup1 (with runtime-spec LinuxResources) on v1 and hybrid hosts, package cgroup2 on v2
// hosts, chosen by cgroups.Mode() at run time; nothing assumes one layout.
//
// # Layout
//
// Parent() is "/karman", or "<own>/karman-pods" when systemd is PID 1 (/run/systemd/system
// exists, as in sd_booted(3)) and the caller's own cgroup in /proc/self/cgroup (the
// name=systemd entry, else the v2 "0::" entry) is not "/": pods then stay inside the
// caller's unit, which should have Delegate=yes. The parent is never removed by Delete.
//
// # v1 and hybrid
//
// Hybrid hosts are driven as v1: the cgroup2 mount (/sys/fs/cgroup/unified) holds at most a
// few controllers (hugetlb on the test machines) and is left alone. The hierarchies are
// cgroup1.Default() (every controller mounted next to the first v1 mount; it never picks the
// cgroup2 mount) minus the named "systemd" hierarchy, which is no controller: processes keep
// the caller's name=systemd cgroup, i.e. their unit under systemd. The memory controller
// ignores memsw/kmem files the kernel lacks (no swap accounting), so Stats still works.
// Limits: memory.limit_in_bytes, cpu.cfs_quota_us/cpu.cfs_period_us (quota =
// millis*100000/1000, at least the kernel's 1000us), cpu.shares, pids.max. Swap is not
// limited (memsw is left alone).
//
// Processes enter an app on v1 with App.JoinThread: a goroutine locks its OS thread, moves it
// (its TID into "tasks" of every hierarchy), forks the child, and returns still locked so the
// runtime ends the thread. JoinThread refuses the main thread (Go never ends it, so the whole
// process would stay in the pod); programs using the pattern call runtime.LockOSThread first
// in main so that other goroutines never run on the main thread.
//
// # v2
//
// NewPod enables cpu, memory and pids (those each level has in cgroup.controllers) in
// cgroup.subtree_control of every level from the root down to the pod itself. Limits:
// memory.max, cpu.max ("quota 100000"), cpu.weight (converted from shares with containerd's
// ConvertCPUSharesToCgroupV2Value, as runc and crun do), pids.max. cgroup v2 has no devices
// controller: AddApp attaches DeviceAllowlist to every app as an eBPF program of type
// BPF_PROG_TYPE_CGROUP_DEVICE, compiled and attached by containerd's cgroup2 (cilium/ebpf,
// BPF_F_ALLOW_MULTI, so programs of the parents keep applying; devices.go). A thread cannot
// join a v2 domain cgroup, so JoinThread returns ErrThreadJoin; processes start directly
// inside with App.FD (O_RDONLY|O_DIRECTORY, which clone3 accepts) and SysProcAttr.UseCgroupFD.
// Under systemd, "<own>" cannot hand controllers to karman-pods while the caller is in it (the
// "no internal processes" rule): when the caller is the only process there it moves itself
// into "<own>/karman-self" and retries; otherwise NewPod fails with an explanation. A caller
// that starts other processes in its own cgroup (the supervisor, its pod init) calls
// PrepareParent first, which does this for the pods' parent.
//
// # Hierarchy
//
// Every call that makes or opens cgroups takes a Hierarchy (--cgroup-hierarchy): Auto (v2 on
// a unified host, v1 on legacy and hybrid ones), V1 (refused on a unified host), Unified (the
// cgroup2 hierarchy, on a hybrid host /sys/fs/cgroup/unified, driven as a v2 host; refused on
// a v1-only host). A hybrid host's cgroup2 hierarchy usually holds no resource controller
// (hugetlb at most), so AddApp refuses, before writing anything, the limits whose controller
// the hierarchy's cgroup.controllers lacks (ErrNoController, naming the flags and what to do).
// Delete on a hybrid host looks in both, whatever the Hierarchy, so a pod made with one is
// removed by a gc run with another. stage0 keeps the pod's (poddir.Cgroups.V2).
//
// # Deletion
//
// Pod.Delete kills what is still inside and removes the apps and the pod in every hierarchy;
// a missing pod is not an error. v2 writes cgroup.kill (containerd falls back to freeze and
// kill on kernels before 5.14). v1 reads cgroup.procs recursively and sends SIGKILL through a
// pidfd after checking /proc/<pid>/cgroup, so a recycled PID is never signalled; it never
// signals the calling process, and retries for up to 5s before giving up.
//
// # What is verified where
//
// On the hybrid test machines (root) e2e_test.go runs end to end on the real kernel: pod and
// apps with limits, the kernel's limit files, a child started with the JoinThread pattern and
// found in /proc/<pid>/cgroup, Stats (pids, memory, CPU time, throttling under a 50m limit,
// an OOM kill under 32 MiB counted from memory.oom_control), OpenApp from the paths, Delete
// killing process trees in several apps and leaving no directory in any hierarchy, idempotent
// Delete, and that the run leaves no karman-test-<pid>-* cgroup (TestMain). The same tests
// take the v2 paths (limit files, FD and clone3) on a v2 host, but have not been run on one.
// Without root they skip.
//
// The v2 code runs on the real kernel in unified_test.go, on the host's cgroup2 hierarchy
// (Unified; on the hybrid test machines the almost empty /sys/fs/cgroup/unified), in cgroups of its own
// under karman-test-<pid>-*: NewPod, AddApp with the eBPF device program (a process started
// inside with clone3 opens /dev/null and /dev/zero but not /dev/kmsg, which it opens outside),
// its membership in /proc/<pid>/cgroup and cgroup.procs, and Delete killing it through
// cgroup.kill and removing the cgroups, limits refused for want of a controller
// (TestUnifiedRefusesMissingControllers). What that hierarchy cannot show (it has no cpu, memory
// or pids controller on a hybrid host) is unit tested: v2fake_test.go runs NewPod, AddApp,
// OpenApp, FD, JoinThread, Stats and Delete against a fake cgroup2 tree of plain files (the
// files containerd writes and the counters the kernel would fill, memory.events included),
// and the systemd-delegated placement: Parent's detection from a fake /proc/self/cgroup and a
// fake /run/systemd/system (TestSystemdDelegatedPlacement: units on v1, hybrid and v2, a
// session scope, the caller already in karman-self, no systemd), the pod created under
// "<unit>/karman-pods" with the controllers handed down through the unit, and the self-move
// into "<unit>/karman-self" (only when the caller is alone in its unit). parse_test.go covers
// the pure functions: the conversion to LinuxResources and to cgroup2 resources (cpu.max,
// shares to weight), the subtree_control line, the self-move decision and the mapping of both
// libraries' metrics to Stats. Not covered by any test: limits on a real v2 kernel, and EBUSY
// from a real unit's cgroup (the fake cannot answer EBUSY).
package cgroups
