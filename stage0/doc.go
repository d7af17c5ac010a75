// Package stage0 is the pod lifecycle as a library: prepare, run, list,
// status, stop, signal, wait, rm, gc, enter and logs. The CLI, the node
// agent and any cluster driver call it; it never exits the process and logs
// only through the slog.Logger it is given. Pods carry labels (PodSpec.Labels,
// kept in LabelsFile, written first of all) by which their callers find
// their own pods again, an embryo left by a caller killed mid-way included.
//
// There is no daemon and no database. A pod is a directory under
// DIR/pods, and its state is where that directory is plus whether its
// lock is held:
//
//	embryo/UUID          being prepared (locked by stage0)
//	prepared/UUID        prepared, waiting for run-prepared
//	run/UUID             locked: running (the supervisor holds the lock)
//	                     unlocked: exited
//	exited-garbage/UUID  marked by gc after it exited; swept after the grace period
//	garbage/UUID         a prepare that failed or was abandoned
//
// Directories move between states by atomic rename; the supervisor (the
// process that ran `karman run`, exec'd into stage1) holds an exclusive
// flock on its pod directory for its whole life, and the kernel drops it
// when the supervisor dies, however it dies. `list` and `status` probe the
// lock, `status --wait` waits for it. Whatever a pod creates is recorded in
// its directory before it is created, so gc can always undo it.
//
// A pod's networks are made when it is run (Run, RunPrepared), in this
// process and before stage1 starts (package network); gc undoes them when
// it marks an exited pod, and the supervisor already when the pod ends.
//
// Removing a pod (Remove, GC) never wedges: each part is undone even when
// another fails, a damaged record is worked around (the network by the
// pod's UUID, the cgroups where karman makes them), and the directory stays
// only while something is left that a retry could undo (ForceRemove
// removes it anyway). Commands racing on one pod: one removes it, the
// others get ErrGone.
package stage0
