package stage0

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/karman-project/karman/internal/multicall"
	"github.com/karman-project/karman/network"
	"github.com/karman-project/karman/stage1/poddir"
)

// A pod's network is made when it is run, not when it is prepared: a
// prepared pod holds no namespace, address or port. What the pod asked for
// waits in PODDIR/net/request.json; setupNetwork makes the network (in
// this process, before stage1 starts: stage1 only joins the namespace) and
// completes pod.json with the namespace, /etc/hosts, /etc/resolv.conf and
// the teardown command that the supervisor runs when the pod ends. gc
// undoes whatever is left (network.Teardown is idempotent).

// netRequest is what a pod asked of its networks.
type netRequest struct {
	Networks []network.Attachment  `json:"networks"`
	Ports    []network.PortMapping `json:"ports,omitempty"`
	DNS      network.DNS           `json:"dns"`
}

const netRequestFile = "net/request.json"

// TeardownEntrypoint is the hidden command that undoes a pod's network:
// karman __network-teardown PODDIR. Runtime.TeardownCmd names it.
const TeardownEntrypoint = "__network-teardown"

// TeardownMain is the TeardownEntrypoint, for the multicall table of
// karman's main: args are PODDIR.
func TeardownMain(args []string) int {
	if len(args) != 1 {
		return multicall.Fail(os.Stderr, fmt.Errorf("usage: karman %s PODDIR", TeardownEntrypoint))
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := network.Teardown(context.Background(), args[0], log); err != nil {
		return multicall.Fail(os.Stderr, err)
	}
	return 0
}

// checkNetwork refuses, before anything is made, networks that are not
// configured or lack plugins, and host ports that are taken.
func (r *Runtime) checkNetwork(spec PodSpec) error {
	if spec.Net == network.None || spec.Net == network.Host {
		return nil
	}
	atts, err := network.ParseNet(spec.Net)
	if err != nil {
		return err
	}
	return network.Check(network.Options{UUID: "00000000-0000-4000-8000-000000000000", Networks: atts, Ports: spec.Ports, ConfigDir: r.configDir})
}

// prepareNetwork fills in pod.json's network part for none and host, or
// returns the request for attachNetworks, recorded (with record) for
// RunPrepared.
func prepareNetwork(p pod, spec PodSpec, pd *poddir.Pod, record bool) (*netRequest, error) {
	if spec.Net == network.None || spec.Net == network.Host {
		pd.Hosts = network.Hosts(pd.Hostname, pd.Name, nil)
		pd.ResolvConf, _ = network.ResolvConf(spec.DNS, spec.Net, nil)
		return nil, nil
	}
	atts, err := network.ParseNet(spec.Net)
	if err != nil {
		return nil, err
	}
	req := &netRequest{Networks: atts, Ports: spec.Ports, DNS: spec.DNS}
	if !record {
		return req, nil
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(p.path, network.RecordDir), 0o755); err != nil {
		return nil, err
	}
	return req, os.WriteFile(filepath.Join(p.path, netRequestFile), b, 0o644)
}

// setupNetwork makes the pod's networks and completes its pod.json. On
// failure it leaves nothing of the network behind.
func (r *Runtime) setupNetwork(ctx context.Context, p pod) error {
	b, err := os.ReadFile(filepath.Join(p.path, netRequestFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil // none or host
	}
	if err != nil {
		return err
	}
	var req netRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return fmt.Errorf("pod %s: network request: %w", p.uuid, err)
	}
	pd, err := poddir.Load(p.path)
	if err != nil {
		return err
	}
	if err := r.attachNetworks(ctx, p, pd, &req); err != nil {
		return err
	}
	if err := poddir.Save(p.path, pd); err != nil {
		network.Teardown(context.WithoutCancel(ctx), p.path, r.log)
		return err
	}
	return nil
}

// attachNetworks makes the pod's networks, in a network namespace of
// their own, and fills in pd's network fields; the caller saves pd, or
// calls network.Teardown if it cannot.
func (r *Runtime) attachNetworks(ctx context.Context, p pod, pd *poddir.Pod, req *netRequest) error {
	rec, err := network.Setup(ctx, network.Options{
		UUID: p.uuid, PodDir: p.path, Networks: req.Networks, Ports: req.Ports, ConfigDir: r.configDir, Log: r.log,
	})
	if err != nil {
		return err
	}
	pd.NetNS = rec.NetNS
	pd.Hosts = network.Hosts(pd.Hostname, pd.Name, rec)
	pd.ResolvConf, _ = network.ResolvConf(req.DNS, req.Networks[0].Name, rec)
	// Removing the namespace (which the supervisor does by itself) frees
	// a default network's veth and address; forwards and CNI networks
	// need karman itself.
	if len(req.Ports) > 0 || slices.ContainsFunc(req.Networks, func(a network.Attachment) bool { return a.Name != network.Default }) {
		pd.Teardown = r.TeardownCmd
	}
	return nil
}

// teardownNetwork undoes a pod's network, wherever the pod is; a pod
// whose network record is damaged has its network undone by its UUID.
func (r *Runtime) teardownNetwork(ctx context.Context, p pod) error {
	err := network.Teardown(ctx, p.path, r.log)
	if !errors.Is(err, network.ErrRecordDamaged) {
		return err
	}
	r.log.Warn("undoing the network of a pod by its UUID", "pod", p.uuid, "err", err)
	if err := network.TeardownByUUID(ctx, network.Options{UUID: p.uuid, PodDir: p.path, ConfigDir: r.configDir, Log: r.log}); err != nil {
		return err
	}
	if r.Warn != nil {
		r.Warn(fmt.Sprintf("pod %s: its network record was damaged (%v); its network was undone by the pod's UUID", p.uuid, err))
	}
	return nil
}

// networkInfo is what list and status show of a pod's networks.
func networkInfo(podDir string) []NetworkInfo {
	rec, err := network.Load(podDir)
	if err != nil {
		return []NetworkInfo{}
	}
	out := []NetworkInfo{}
	for _, s := range rec.Statuses() {
		out = append(out, NetworkInfo{Name: s.Name, Interface: s.Interface, Addresses: s.Addresses, Gateway: s.Gateway})
	}
	return out
}

// Networks lists the networks pods may join here (network.Names).
func (r *Runtime) Networks() []string { return network.Names(r.configDir) }
