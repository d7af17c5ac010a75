// Package trim gives back what the start-up of a pod's long-lived
// processes, the supervisor and the init, made resident: free heap pages
// and the binary's code and read-only data, once the pod has run for
// Delay; and it turns the periodic garbage collection off under a memory
// limit, so that a settled pod stays small (docs/pods.md, "Memory of a
// running pod").
package trim
