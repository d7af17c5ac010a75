// Package streaming is the CRI's streaming server on karman: the HTTP
// endpoints that kubelet (or crictl, critest) connects to after the
// RuntimeService's Exec, Attach and PortForward calls returned a URL.
// It wraps k8s.io/cri-streaming (the library kubelet's runtimes share:
// SPDY and websocket protocols, one-time tokens, resize events, exit
// status reporting) and runs each stream on the stage0 library:
//
//	Exec        -> stage0.Runtime.Enter, the command in the container's
//	               app, its streams relayed, its exit status reported
//	Attach      -> stage0.Runtime.Attach, the app's own stdio
//	PortForward -> stage0.Runtime.PortForward, a port of the sandbox
//	               pod's loopback
//
// Lifecycle:
//
//	s, err := streaming.New(streaming.Config{Addr: "127.0.0.1:0"}, rt, ids, log)
//	err = s.Start()                   // listening: URLs carry the real port
//	resp, err := s.GetExec(req)       // from the CRI's Exec: a one-time URL
//	...                               // the client streams over that URL
//	s.Close()
//
// The server listens on loopback only, over plain HTTP, as the CRI
// expects of a runtime whose clients are on the node (kubelet proxies the
// streams of the API server's clients).
package streaming
