package cri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/stage0"
)

// DefaultSocket is where the agent serves the CRI by default.
const DefaultSocket = "/run/karman/cri.sock"

// RuntimeName is what Version reports as the runtime's name.
const RuntimeName = "karman"

// apiVersion is the CRI version served.
const apiVersion = "v1"

// Config configures a Server.
type Config struct {
	// Runtime runs the sandboxes' pods; its Fetcher is not used (PullImage
	// fetches through Pull, which takes the request's credentials).
	Runtime *stage0.Runtime
	// StateDir holds the CRI records (the agent's state directory's cri/).
	StateDir string
	// Pull fetches an image into the runtime's store under the signature
	// policy, with the request's credentials (nil: none given); nil
	// refuses PullImage.
	Pull PullFunc
	// Version is karman's version.
	Version string
	Logger  *slog.Logger
	// StreamAddress is where the streaming server of Exec, Attach and
	// PortForward listens (exec.go); empty: 127.0.0.1 on a free port.
	StreamAddress string
}

// PullFunc fetches ref into the store and returns its manifest digest
// ("sha256:..."); auth, when not nil, are the registry credentials the
// request carries.
type PullFunc func(ctx context.Context, ref string, auth *runtimeapi.AuthConfig) (string, error)

// Server serves the CRI's RuntimeService and ImageService on the stage0
// library. See the package documentation for what maps to what.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	// rt runs the pods; log is the agent's logger; cfg is as given.
	rt  *stage0.Runtime
	log *slog.Logger
	cfg Config

	// store keeps the sandboxes' and containers' records.
	store *store

	// mu guards the maps and serializes the operations that change
	// them; ops on one sandbox hold its lock too (sandboxLock).
	mu         sync.Mutex
	sandboxes  map[string]*sandboxRecord   // by id (the pod UUID)
	containers map[string]*containerRecord // by id
	sbLocks    map[string]*sync.Mutex

	// stream is the streaming side (exec.go).
	stream streamer

	// cpu turns CPU times into rates for the stats; fs keeps the usage
	// of the store and the pods.
	cpu cpuSampler
	fs  fsCache
	// oomOnce: the clamping of oom_score_adj is logged once.
	termOnce  sync.Once // the termination message file not mounted, logged once
	oomOnce   sync.Once
	oomLogged sync.Once
	oomMin    int // the lowest oom_score_adj this process may set
}

var (
	_ runtimeapi.RuntimeServiceServer = (*Server)(nil)
	_ runtimeapi.ImageServiceServer   = (*Server)(nil)
)

// New opens the CRI records in cfg.StateDir and reconciles them with the
// pods of the runtime: sandboxes and containers whose pods are gone are
// forgotten, the others are reported as before.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Runtime == nil || cfg.StateDir == "" {
		return nil, errors.New("cri: a runtime and a state directory are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	st, err := openStore(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	s := &Server{rt: cfg.Runtime, log: cfg.Logger, cfg: cfg, store: st,
		sandboxes: map[string]*sandboxRecord{}, containers: map[string]*containerRecord{}, sbLocks: map[string]*sync.Mutex{}}
	if err := s.recover(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Serve serves the RuntimeService and the ImageService on l until ctx
// ends; the sandboxes and containers keep running.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	g := grpc.NewServer(grpc.MaxRecvMsgSize(16<<20), grpc.MaxSendMsgSize(16<<20))
	runtimeapi.RegisterRuntimeServiceServer(g, s)
	runtimeapi.RegisterImageServiceServer(g, s)
	if err := s.startStreaming(ctx); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	g.Stop()
	return nil
}

// Version answers with karman's name and version.
func (s *Server) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{Version: "0.1.0", RuntimeName: RuntimeName, RuntimeVersion: semanticVersion(s.cfg.Version), RuntimeApiVersion: apiVersion}, nil
}

// semanticVersion is karman's version as a semantic version, which the
// kubelet needs to show it (it shows "Unknown" otherwise): v1.2.3 and
// 1.2.3-rc.1 as they are without the v, a build of no release (the
// commit, as `git describe --always` gives it) as 0.0.0+COMMIT.
func semanticVersion(v string) string {
	v = strings.TrimPrefix(v, "v")
	core, _, _ := strings.Cut(v, "-")
	core, _, _ = strings.Cut(core, "+")
	if parts := strings.Split(core, "."); len(parts) == 3 && allDigits(parts[0]) && allDigits(parts[1]) && allDigits(parts[2]) {
		return v
	}
	meta := []byte(v)
	for i, c := range meta {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '.') {
			meta[i] = '-'
		}
	}
	if len(meta) == 0 {
		return "0.0.0"
	}
	return "0.0.0+" + string(meta)
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// Status reports the runtime and the network ready: pods start without
// a daemon, and the default network is made with the first pod that
// needs it.
func (s *Server) Status(_ context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	resp := &runtimeapi.StatusResponse{
		Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
			{Type: runtimeapi.RuntimeReady, Status: true},
			{Type: runtimeapi.NetworkReady, Status: true},
		}},
		RuntimeHandlers: []*runtimeapi.RuntimeHandler{{Name: "", Features: handlerFeatures}},
		Features:        runtimeFeatures,
	}
	if _, err := os.Stat(s.cfg.StateDir); err != nil {
		resp.Status.Conditions[0] = &runtimeapi.RuntimeCondition{Type: runtimeapi.RuntimeReady, Reason: "StateDirMissing", Message: err.Error()}
	}
	if req.GetVerbose() {
		resp.Info = map[string]string{"config": fmt.Sprintf(`{"stateDir":%q,"cgroupDriver":"cgroupfs"}`, s.cfg.StateDir)}
	}
	return resp, nil
}

// RuntimeConfig reports the cgroup driver: karman makes its cgroups
// itself (cgroupfs), whatever the init system.
func (s *Server) RuntimeConfig(context.Context, *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	return &runtimeapi.RuntimeConfigResponse{Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: runtimeapi.CgroupDriver_CGROUPFS}}, nil
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

// container resolves a container id (or a unique prefix of one) to its
// sandbox's pod UUID and its app's name in that pod. The error is a gRPC
// NotFound status for an unknown id. Streaming (exec.go) uses it.
func (s *Server) container(id string) (podUUID, app string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.findContainerLocked(id)
	if err != nil {
		return "", "", err
	}
	return c.SandboxID, c.App, nil
}
