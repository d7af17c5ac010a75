// Package isolators expresses per-app isolation as OCI runtime-spec fields
// (cgroups, capabilities, seccomp, no_new_privs, masked and read-only paths,
// rlimits, oom_score_adj) and applies them in stage1.
//
// It holds what the pod init needs and nothing heavy (x/sys/unix and the
// standard library only): the seccomp filters (seccomp.go: the default
// filter, --seccomp remove and retain lists with their errno, the BPF
// assembler, a filter's encoding for the exec shim), the x86-64 and i386
// system call table (syscalls_table.go, generated from golang.org/x/sys by
// internal/gensyscalls: `go generate ./isolators`), the capability sets
// (caps.go) and the namespaced sysctls (sysctl.go). The cgroups, which need
// containerd/cgroups, live in the subpackage cgroups, used by stage0's side.
package isolators
