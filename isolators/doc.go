// Package isolators expresses per-app isolation as OCI runtime-spec fields
// (cgroups, capabilities, seccomp, no_new_privs, masked and read-only paths,
// rlimits, oom_score_adj) and applies them in stage1.
//
// So far it holds the default seccomp filter (seccomp.go), which stage1
// loads on the thread that starts a pod's apps; the default capabilities,
// no_new_privs and masked paths live in stage1 until the per-app settings
// of the isolators issue move them here.
package isolators
