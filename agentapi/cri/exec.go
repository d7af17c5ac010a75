package cri

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/agentapi/cri/streaming"
	"github.com/karman-project/karman/stage0"
)

// The streaming side of the server: ExecSync runs a command in a
// container's app (stage0.Runtime.Enter) and answers with its output and
// status; Exec, Attach and PortForward answer with a one-time URL of the
// streaming server (package streaming, on loopback), which runs the
// streams on stage0 when the client connects.

// streamer is the Server's streaming state.
type streamer struct {
	srv *streaming.Server
}

// maxExecSyncOutput bounds what ExecSync keeps of each stream: its reply
// must fit in a gRPC message (16 MiB, Serve's limit).
const maxExecSyncOutput = 4 << 20

// startStreaming starts the streaming server; it stops when ctx ends.
func (s *Server) startStreaming(ctx context.Context) error {
	srv, err := streaming.New(streaming.Config{Addr: s.cfg.StreamAddress}, s.rt, criIDs{s}, s.log)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	s.stream.srv = srv
	s.log.Info("CRI streaming server listening", "addr", srv.Addr())
	context.AfterFunc(ctx, func() { srv.Close() })
	return nil
}

// runningContainer resolves a container id to its pod and app, and
// refuses a container that is not running.
func (s *Server) runningContainer(ctx context.Context, id string) (uuid, app string, err error) {
	uuid, app, err = s.container(id)
	if err != nil {
		return "", "", err
	}
	apps, err := s.rt.ListApps(ctx, uuid)
	if err != nil {
		return "", "", grpcError(err)
	}
	for _, a := range apps {
		if a.Name == app {
			if a.State != stage0.AppRunning {
				return "", "", status.Errorf(codes.FailedPrecondition, "container %s is %s, not running: start it first", id, a.State)
			}
			return uuid, app, nil
		}
	}
	return "", "", notFound("container " + id)
}

// ExecSync runs the command in the container and returns its output and
// exit status. A timeout kills it (and what it started) and fails with
// DeadlineExceeded.
func (s *Server) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	if len(req.GetCmd()) == 0 {
		return nil, invalid("exec: no command given")
	}
	uuid, app, err := s.runningContainer(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	run := ctx
	if t := req.GetTimeout(); t > 0 {
		var cancel context.CancelFunc
		run, cancel = context.WithTimeout(ctx, time.Duration(t)*time.Second)
		defer cancel()
	}
	stdout, stderr := &cappedBuffer{max: maxExecSyncOutput}, &cappedBuffer{max: maxExecSyncOutput}
	code, err := s.rt.Enter(run, uuid, stage0.EnterOptions{App: app, Args: req.GetCmd(), Stdout: stdout, Stderr: stderr})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, status.Errorf(codes.DeadlineExceeded, "exec in container %s: command %q timed out after %ds and was killed", req.GetContainerId(), req.GetCmd(), req.GetTimeout())
		}
		return nil, grpcError(err)
	}
	return &runtimeapi.ExecSyncResponse{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: int32(code)}, nil
}

// Exec returns the streaming URL of a command in the container.
func (s *Server) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if len(req.GetCmd()) == 0 {
		return nil, invalid("exec: no command given")
	}
	if _, _, err := s.runningContainer(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	if s.stream.srv == nil {
		return nil, status.Error(codes.Unavailable, "the streaming server is not running")
	}
	return s.stream.srv.GetExec(req)
}

// Attach returns the streaming URL of the container's own stdio.
func (s *Server) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	if _, _, err := s.runningContainer(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	if s.stream.srv == nil {
		return nil, status.Error(codes.Unavailable, "the streaming server is not running")
	}
	return s.stream.srv.GetAttach(req)
}

// PortForward returns the streaming URL of forwards to the sandbox's
// ports (on its loopback).
func (s *Server) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	if _, err := (criIDs{s}).Sandbox(ctx, req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	if s.stream.srv == nil {
		return nil, status.Error(codes.Unavailable, "the streaming server is not running")
	}
	return s.stream.srv.GetPortForward(req)
}

// criIDs maps the CRI's ids for the streaming server.
type criIDs struct{ s *Server }

func (c criIDs) Container(ctx context.Context, id string) (string, string, error) {
	uuid, app, err := c.s.runningContainer(ctx, id)
	if err != nil {
		return "", "", fmt.Errorf("container %s: %w", id, err)
	}
	return uuid, app, nil
}

func (c criIDs) Sandbox(_ context.Context, id string) (string, error) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	r, err := c.s.findSandboxLocked(id)
	if err != nil {
		return "", err
	}
	if r.Stopped {
		return "", status.Errorf(codes.FailedPrecondition, "sandbox %s is stopped", r.ID)
	}
	return r.ID, nil
}

// cappedBuffer keeps the first max bytes written to it and discards the
// rest.
type cappedBuffer struct {
	bytes.Buffer
	max int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
