package cri

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/stage0"
)

// RunPodSandbox starts a pod with no apps, kept alive until
// StopPodSandbox, and records the request.
func (s *Server) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	c := req.GetConfig()
	md := c.GetMetadata()
	if md.GetName() == "" {
		return nil, invalid("RunPodSandbox: the sandbox's metadata needs a name")
	}
	if h := req.GetRuntimeHandler(); h != "" {
		return nil, invalid("RunPodSandbox: runtime handler %q: karman has only the default one (\"\")", h)
	}
	spec, err := s.sandboxSpec(c)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	for _, sb := range s.sandboxes {
		m := sb.config.GetMetadata()
		if m.GetName() == md.GetName() && m.GetNamespace() == md.GetNamespace() && m.GetUid() == md.GetUid() && m.GetAttempt() == md.GetAttempt() {
			s.mu.Unlock()
			return nil, status.Errorf(codes.AlreadyExists, "RunPodSandbox: sandbox %s (attempt %d) exists already as %s", podName(md), md.GetAttempt(), sb.ID)
		}
	}
	s.mu.Unlock()
	if d := c.GetLogDirectory(); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, grpcError(fmt.Errorf("RunPodSandbox: log directory: %w", err))
		}
	}
	created := time.Now()
	// The pod carries LabelSandbox from its first file on: an agent
	// stopped before the record below is written removes it (recover).
	uuid, _, err := s.rt.Run(ctx, spec, stage0.RunOptions{Detach: true})
	if err != nil {
		return nil, grpcError(fmt.Errorf("RunPodSandbox %s: %w", podName(md), err))
	}
	if _, err := s.rt.WaitStarted(ctx, uuid); err != nil {
		s.discardPod(uuid)
		return nil, grpcError(fmt.Errorf("RunPodSandbox %s: %w", podName(md), err))
	}
	r := &sandboxRecord{ID: uuid, Created: created.UTC(), config: c, RuntimeHandler: req.GetRuntimeHandler()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.store.saveSandbox(r); err != nil {
		s.discardPod(uuid)
		return nil, grpcError(err)
	}
	s.sandboxes[uuid] = r
	s.log.Info("cri: sandbox running", "sandbox", uuid, "name", podName(md), "attempt", md.GetAttempt())
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: uuid}, nil
}

// discardPod stops and removes a pod the CRI made and will not record.
func (s *Server) discardPod(uuid string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.rt.Stop(ctx, uuid, true); err == nil {
		s.rt.Wait(ctx, uuid)
	}
	if err := s.rt.Remove(ctx, uuid); err != nil && !errors.Is(err, stage0.ErrNotFound) {
		s.log.Warn("cri: removing a pod that failed to start; `karman gc` removes what is left", "pod", uuid, "err", err)
	}
}

// StopPodSandbox stops the sandbox's pod, its containers with it (at
// once: the CRI asks them killed), and with it its network. A sandbox
// that is not known, or stopped already, is not an error.
func (s *Server) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	sb, unlock, err := s.lockedSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if sb == nil {
		return &runtimeapi.StopPodSandboxResponse{}, nil
	}
	defer unlock()
	if err := s.stopPod(ctx, sb.ID); err != nil {
		return nil, grpcError(fmt.Errorf("StopPodSandbox %s: %w", sb.ID, err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !sb.Stopped {
		sb.Stopped = true
		if err := s.store.saveSandbox(sb); err != nil {
			return nil, grpcError(err)
		}
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

// stopPod stops a pod, its apps at once, and waits until it has ended
// (and its supervisor has undone its network).
func (s *Server) stopPod(ctx context.Context, uuid string) error {
	err := s.rt.Stop(ctx, uuid, true)
	switch {
	case errors.Is(err, stage0.ErrNotFound):
		return nil
	case err != nil && !errors.Is(err, stage0.ErrState):
		return err
	}
	_, err = s.rt.Wait(ctx, uuid)
	if errors.Is(err, stage0.ErrNotFound) {
		return nil
	}
	return err
}

// RemovePodSandbox stops the sandbox if it runs and removes its pod, its
// containers with it, and their records. A sandbox that is not known is
// not an error.
func (s *Server) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	sb, unlock, err := s.lockedSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if sb == nil {
		return &runtimeapi.RemovePodSandboxResponse{}, nil
	}
	defer unlock()
	if err := s.stopPod(ctx, sb.ID); err != nil {
		return nil, grpcError(fmt.Errorf("RemovePodSandbox %s: %w", sb.ID, err))
	}
	if err := s.rt.Remove(ctx, sb.ID); err != nil && !errors.Is(err, stage0.ErrNotFound) {
		return nil, grpcError(fmt.Errorf("RemovePodSandbox %s: %w", sb.ID, err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for id, c := range s.containers {
		if c.SandboxID == sb.ID {
			errs = append(errs, s.store.remove("containers", id))
			delete(s.containers, id)
		}
	}
	errs = append(errs, s.store.remove("sandboxes", sb.ID))
	delete(s.sandboxes, sb.ID)
	delete(s.sbLocks, sb.ID)
	if err := errors.Join(errs...); err != nil {
		return nil, grpcError(err)
	}
	s.log.Info("cri: sandbox removed", "sandbox", sb.ID)
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

// sandboxState is a sandbox's state from its pod: ready while it runs
// and has not been stopped.
func sandboxState(sb *sandboxRecord, pi stage0.PodInfo) runtimeapi.PodSandboxState {
	if pi.State == stage0.Running && !sb.Stopped {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

// PodSandboxStatus reports a sandbox: its state, its pod's address,
// its namespaces, and what the request gave.
func (s *Server) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	s.mu.Lock()
	sb, err := s.findSandboxLocked(req.GetPodSandboxId())
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	pi, err := s.rt.Status(ctx, sb.ID)
	if errors.Is(err, stage0.ErrNotFound) {
		pi, err = stage0.PodInfo{UUID: sb.ID, State: stage0.Garbage}, nil
	}
	if err != nil {
		return nil, grpcError(err)
	}
	st := s.sandboxStatus(sb, pi)
	resp := &runtimeapi.PodSandboxStatusResponse{Status: st, Timestamp: time.Now().UnixNano()}
	if req.GetVerbose() {
		resp.Info = map[string]string{"info": fmt.Sprintf(`{"pod":%q,"podState":%q}`, pi.UUID, pi.State)}
	}
	return resp, nil
}

func (s *Server) sandboxStatus(sb *sandboxRecord, pi stage0.PodInfo) *runtimeapi.PodSandboxStatus {
	c := sb.config
	st := &runtimeapi.PodSandboxStatus{
		Id: sb.ID, Metadata: c.GetMetadata(), State: sandboxState(sb, pi), CreatedAt: sb.Created.UnixNano(),
		Labels: c.GetLabels(), Annotations: c.GetAnnotations(), RuntimeHandler: sb.RuntimeHandler,
		Network: &runtimeapi.PodSandboxNetworkStatus{},
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{
			Options: nsOptions(c.GetLinux().GetSecurityContext().GetNamespaceOptions())}},
	}
	if st.State == runtimeapi.PodSandboxState_SANDBOX_READY {
		var ips []string
		for _, n := range pi.Networks {
			for _, a := range n.Addresses {
				if p, err := netip.ParsePrefix(a); err == nil {
					a = p.Addr().String()
				}
				if !slices.Contains(ips, a) {
					ips = append(ips, a)
				}
			}
		}
		if len(ips) > 0 {
			st.Network.Ip = ips[0]
			for _, ip := range ips[1:] {
				st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
			}
		}
	}
	return st
}

// nsOptions are the namespace options a sandbox runs with.
func nsOptions(o *runtimeapi.NamespaceOption) *runtimeapi.NamespaceOption {
	if o == nil {
		return &runtimeapi.NamespaceOption{}
	}
	return &runtimeapi.NamespaceOption{Network: o.GetNetwork(), Pid: o.GetPid(), Ipc: o.GetIpc(), TargetId: o.GetTargetId()}
}

// ListPodSandbox lists the sandboxes, filtered by id (prefix), state and
// labels.
func (s *Server) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	f := req.GetFilter()
	s.mu.Lock()
	var sbs []*sandboxRecord
	for id, sb := range s.sandboxes {
		if f.GetId() != "" && !strings.HasPrefix(id, f.GetId()) {
			continue
		}
		if !matchLabels(sb.config.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		sbs = append(sbs, sb)
	}
	s.mu.Unlock()
	out := []*runtimeapi.PodSandbox{}
	for _, sb := range sbs {
		ps, err := s.rt.State(ctx, sb.ID)
		if err != nil {
			ps = stage0.Garbage
		}
		state := sandboxState(sb, stage0.PodInfo{State: ps})
		if f.GetState() != nil && f.GetState().GetState() != state {
			continue
		}
		c := sb.config
		out = append(out, &runtimeapi.PodSandbox{Id: sb.ID, Metadata: c.GetMetadata(), State: state, CreatedAt: sb.Created.UnixNano(),
			Labels: c.GetLabels(), Annotations: c.GetAnnotations(), RuntimeHandler: sb.RuntimeHandler})
	}
	slices.SortFunc(out, func(a, b *runtimeapi.PodSandbox) int { return int(max(-1, min(1, a.CreatedAt-b.CreatedAt))) })
	return &runtimeapi.ListPodSandboxResponse{Items: out}, nil
}

// matchLabels: every key of sel is in labels with its value.
func matchLabels(labels, sel map[string]string) bool {
	for k, v := range sel {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
