// Package server is the node agent (`karman agent`): it serves the API of
// package agentapi on a unix socket or on TCP with TLS and client
// authentication, and runs tasks as ordinary detached pods through
// package stage0, so the tasks outlive it.
//
// Its state is a directory (DIR/agent by default): one JSON record per
// task (tasks/ID.json, replaced atomically), the event log (events.log,
// one JSON event per line, appended; its last sequence number is where
// the next run continues) and the node id. Each task's pod carries the
// task id in its labels (LabelTask), so a restarted agent finds and adopts
// its pods, reports the tasks that ended while it was down with their exit
// status, and marks tasks lost when the node has rebooted since (the boot
// id recorded with each task differs).
//
// Lifecycle: New (recovers), then Serve on a listener from Listen, with
// Run for the background work (monitor, usage sampling, master
// heartbeats); cancel the context to stop. Stopping the agent never stops
// its tasks.
package server
