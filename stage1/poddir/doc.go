// Package poddir is the contract between stage0 and stage1: a pod
// directory and what is in it. pod.json (Pod, App, Mount, Resources), its
// interface version (InterfaceVersion), reading it once and checking it
// (Load, Pod.Validate) and writing it (Save); the paths stage1 writes its
// state to (SupervisorPID, InitPID, AppsState, ExitFile, ...) and the
// status it records there (AppStatus, ReadAppStatus); the cgroup files
// stage0 makes for stage1 (Cgroups, WriteCgroups, RecordCgroup); the
// ranges of resource limits and the checks of volumes that the CLI and
// the node agent apply to what users give.
//
// It holds types, paths and checks only: no package init(), no process
// of its own. stage0 writes a pod directory through it and reads the
// pod's state back; the supervisor and the init (package stage1) read
// pod.json through it, and nothing else does so.
package poddir
