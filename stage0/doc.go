// Package stage0 is the pod lifecycle as a library: prepare, run, list,
// status, stop, rm, gc, enter and logs, and the on-disk pod store with its
// state machine. The CLI, the node agent and any cluster driver call it; it
// never exits the process and logs only through the slog.Logger it is given.
package stage0
