// Package cri serves the Kubernetes Container Runtime Interface (CRI v1:
// RuntimeService and ImageService over gRPC) for a kubelet, on the stage0
// library: `karman agent --cri-socket PATH` serves it beside the agent's
// own API, and both count the node's resources together
// (server.Agent.ShareWith).
//
// What maps to what:
//
//   - A sandbox is a karman pod started with no apps and kept alive
//     (stage0.PodSpec.KeepAlive); its id is the pod's UUID. No pause image.
//   - A container is an app of its sandbox's pod: CreateContainer is
//     stage0.AddApp, StartContainer StartApp, StopContainer StopApp,
//     RemoveContainer RemoveApp. Its id is a random 64-hex id; its app's
//     name is derived from the container's name and id.
//   - States, exit codes and times are read from the pods (which keep
//     them while the agent is down); what the CRI asked (configs, labels,
//     annotations, log paths, image names) is recorded in the state
//     directory, one JSON file per sandbox and per container (store.go),
//     written atomically before the pod or app is made. New reconciles
//     the records with the pods, so a restarted agent reports everything
//     as before.
//   - Images are those of the runtime's store; PullImage fetches through
//     Config.Pull, under the signature policy.
//   - The translation of CRI configs into stage0 specs is spec.go, one
//     function per level (sandbox, container).
//   - Image volumes are images rendered in the sandbox's pod and mounted
//     read-only (imagevol.go); logs land at kubelet's path through a link
//     from the app's log in the pod, reopened by the supervisor
//     (ReopenContainerLog); stats and metrics come from the apps' cgroups
//     (stats.go, metrics.go); the Stream* lists are the List calls in
//     chunks (stream_lists.go).
//   - The node's accounting: Allocated and Pods (accounting.go) make the
//     CRI's containers count in the agent's node document.
//
// The streaming calls (ExecSync, Exec, Attach, PortForward) live in
// exec.go: its streamer type is the Server's field stream, and
// startStreaming is called as Serve starts. They find a container's pod
// and app with Server.container(id), which returns the sandbox's pod
// UUID and the app's name (or a gRPC NotFound status), and run through
// Server.rt (the *stage0.Runtime) and log through Server.log.
package cri
