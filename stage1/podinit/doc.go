// Package podinit is the pod's init, karman-stage1 __stage1-init (Main,
// poddir.CmdInit), PID 1 of the pod: it builds the pod root (the apps'
// overlays, /proc, /dev, /sys, /etc files, volumes), pivots into it,
// starts each app chrooted into its root with its user, capabilities,
// seccomp filter and cgroup, reaps every process of the pod, reports to
// the supervisor and serves enter and stop on the control socket. It also
// holds the exec shim (ExecShimMain, poddir.CmdExec) through which apps
// with a filter of their own, and every confined app on cgroup v2,
// start. See package stage1 for the process model.
package podinit
