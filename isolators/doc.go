// Package isolators expresses per-app isolation as OCI runtime-spec fields
// (cgroups, capabilities, seccomp, no_new_privs, masked and read-only paths,
// rlimits, oom_score_adj) and applies them in stage1.
package isolators
