package cri

import "context"

// The streaming side of the server: ExecSync, Exec, Attach and
// PortForward (this file is the streaming slice's; these are its
// placeholders). streamer is the state it keeps in the Server, and
// startStreaming starts it when Serve starts.

type streamer struct{}

func (s *Server) startStreaming(context.Context) error { return nil }
