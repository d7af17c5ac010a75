package cri

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
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

// UpdateContainerResources applies new limits to a container's cgroup.
func (s *Server) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	c, sb, err := s.lookContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	res := req.GetLinux()
	if res == nil {
		return &runtimeapi.UpdateContainerResourcesResponse{}, nil
	}
	l := s.sandboxLock(sb.ID)
	l.Lock()
	defer l.Unlock()
	if err := s.rt.UpdateApp(ctx, sb.ID, c.App, appResources(res)); err != nil {
		return nil, grpcError(fmt.Errorf("UpdateContainerResources %s: %w", c.ID, err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c.resources = res
	if err := s.store.saveContainer(c); err != nil {
		return nil, grpcError(err)
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}

// clampOOMScoreAdj is adj, or the lowest value this process may set when
// adj is lower: without CAP_SYS_RESOURCE a process may not lower
// oom_score_adj below its own (kubelet asks -997 of guaranteed
// containers). Clamping is logged once and never fails.
func (s *Server) clampOOMScoreAdj(adj int) int {
	s.oomOnce.Do(func() {
		s.oomMin = -1000
		if hasCapSysResource() {
			return
		}
		b, _ := os.ReadFile("/proc/self/oom_score_adj")
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			s.oomMin = n
		}
	})
	if adj >= s.oomMin {
		return adj
	}
	s.oomLogged.Do(func() {
		s.log.Warn("cri: this process lacks CAP_SYS_RESOURCE, so containers' oom_score_adj is raised to the lowest it may set (logged once)", "asked", adj, "set", s.oomMin)
	})
	return s.oomMin
}

// hasCapSysResource reports whether this process holds CAP_SYS_RESOURCE
// (bit 24 of CapEff).
func hasCapSysResource() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && n&(1<<24) != 0
		}
	}
	return false
}

// UpdateRuntimeConfig takes kubelet's pod CIDR and does nothing with it:
// the pods' addresses come from karman's network configuration (its
// default network's subnet or the CNI networks of CONFIG-DIR).
func (s *Server) UpdateRuntimeConfig(_ context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	if cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr(); cidr != "" {
		s.log.Info("cri: kubelet's pod CIDR is not applied: the pods' addresses come from karman's network configuration", "podCIDR", cidr)
	}
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}
