package cri

import (
	"context"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/stage0"
)

// ReopenContainerLog has the container's pod supervisor open its log
// path again (after kubelet renamed the log away to rotate it), and
// returns once the new file is there.
func (s *Server) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	c, sb, err := s.lookContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	ai, err := s.appInfo(ctx, c)
	if err != nil {
		return nil, grpcError(err)
	}
	if ai.State != stage0.AppRunning {
		return nil, status.Errorf(codes.FailedPrecondition, "ReopenContainerLog %s: the container is %s, not running", c.ID, ai.State)
	}
	if c.LogPath == "" {
		return &runtimeapi.ReopenContainerLogResponse{}, nil
	}
	if err := s.linkLog(sb.ID, c); err != nil {
		return nil, grpcError(err)
	}
	if err := s.rt.ReopenLogs(ctx, sb.ID); err != nil {
		return nil, grpcError(fmt.Errorf("ReopenContainerLog %s: %w", c.ID, err))
	}
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		if _, err := os.Stat(c.LogPath); err == nil {
			return &runtimeapi.ReopenContainerLogResponse{}, nil
		}
		select {
		case <-ctx.Done():
			return nil, grpcError(fmt.Errorf("ReopenContainerLog %s: the log %s did not reappear: %w", c.ID, c.LogPath, ctx.Err()))
		case <-time.After(wait):
		}
	}
}
