package tests

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/tests/testimage"
	"github.com/karman-project/karman/tests/testregistry"
)

// criEnv is a karman agent serving the CRI on a socket of its own, on a
// test network, and a gRPC client of it.
type criEnv struct {
	*agentEnv
	ne   *netEnv
	sock string
	rs   runtimeapi.RuntimeServiceClient
	is   runtimeapi.ImageServiceClient
}

func newCRIEnv(t *testing.T) *criEnv {
	t.Helper()
	ne := newNetEnv(t, 24)
	e := &criEnv{agentEnv: newAgentEnvOn(t, ne.podEnv), ne: ne}
	e.sock = filepath.Join(e.dir, "run", "cri.sock")
	// Nothing the agent fetches may leave loopback.
	e.env = []string{"HTTP_PROXY=http://127.0.0.1:9", "HTTPS_PROXY=http://127.0.0.1:9"}
	conn, err := grpc.NewClient("unix://"+e.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e.rs, e.is = runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
	return e
}

// startCRI starts the agent with its CRI socket and waits until both
// APIs answer.
func (e *criEnv) startCRI(t *testing.T) {
	t.Helper()
	args := []string{"--dir", e.dir, "--config-dir", filepath.Join(e.dir, "etc"), "agent", "--listen", "unix://" + e.agentEnv.sock, "--cri-socket", e.sock}
	e.startArgs(t, args, func(ctx context.Context) error {
		if _, err := e.c.Health(ctx); err != nil {
			return err
		}
		_, err := e.rs.Version(ctx, &runtimeapi.VersionRequest{})
		return err
	})
}

func (e *criEnv) waitContainer(t *testing.T, id string, state runtimeapi.ContainerState) *runtimeapi.ContainerStatus {
	t.Helper()
	var last *runtimeapi.ContainerStatus
	for range 1500 {
		st, err := e.rs.ContainerStatus(ctxT(t, 10*time.Second), &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			t.Fatal(err)
		}
		if last = st.Status; last.State == state {
			return last
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("container %s never %s: %v", id, state, last)
	return nil
}

// waitLog waits until the file holds want and returns it.
func waitLog(t *testing.T, path, want string) string {
	t.Helper()
	var b []byte
	for range 1500 {
		if b, _ = os.ReadFile(path); strings.Contains(string(b), want) {
			return string(b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never held %q:\n%s", path, want, b)
	return ""
}

// TestCRILifecycle drives `karman agent --cri-socket` as a kubelet would,
// over gRPC: an image pulled from a loopback registry (and one the
// signature policy refuses), a sandbox on a pod network with a host port,
// DNS options and a host name, a container whose output lands in the CRI
// log format at the path asked, its status, stats and the node's
// accounting, an agent killed and restarted while it runs (and while
// another container ends), then stop and removal; the network's and the
// pods' leak checks run in the cleanups.
func TestCRILifecycle(t *testing.T) {
	e := newCRIEnv(t)
	reg := testregistry.InProcess(t)
	img := testimage.Must(t)(testimage.Busybox(testimage.Options{}))
	ref, refused := reg+"/e2e/busybox:1.29", reg+"/e2e/refused:1"
	for _, r := range []string{ref, refused} {
		if _, err := testregistry.Push(context.Background(), r, img); err != nil {
			t.Fatal(err)
		}
	}
	policy := fmt.Sprintf(`{"version": 1, "default": {"type": "insecure-accept-anything"}, "scopes": {%q: {"type": "reject"}}}`, reg+"/e2e/refused")
	os.MkdirAll(filepath.Join(e.dir, "etc"), 0o755)
	if err := os.WriteFile(filepath.Join(e.dir, "etc", "policy.json"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	e.startCRI(t)
	ctx := ctxT(t, 3*time.Minute)

	if _, err := e.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: refused}}); err == nil || !strings.Contains(err.Error(), "reject") || strings.Contains(err.Error(), "\n") {
		t.Errorf("PullImage of an image the policy refuses: %v; want the policy's one-line reason", err)
	}
	pulled, err := e.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		t.Fatal(err)
	}

	hp := freePort(t)
	logDir := filepath.Join(t.TempDir(), "pods", "e2e_web")
	sbc := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "e2e", Uid: "uid-web", Attempt: 0},
		Hostname:     "web-host",
		LogDirectory: logDir,
		DnsConfig:    &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"e2e.svc.cluster.local"}, Options: []string{"ndots:5"}},
		PortMappings: []*runtimeapi.PortMapping{{ContainerPort: 8080, HostPort: int32(hp)}, {ContainerPort: 9090}},
		Labels:       map[string]string{"app": "web"},
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
	sb, err := e.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sbc})
	if err != nil {
		t.Fatal(err)
	}
	e.ne.uuids = append(e.ne.uuids, sb.PodSandboxId)
	pss, err := e.rs.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sb.PodSandboxId})
	if err != nil {
		t.Fatal(err)
	}
	if pss.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY || !strings.HasPrefix(pss.Status.Network.GetIp(), e.ne.prefix) {
		t.Errorf("PodSandboxStatus: state %v, ip %q; want ready on %s0/24", pss.Status.State, pss.Status.Network.GetIp(), e.ne.prefix)
	}

	create := func(name, script string, mem int64, mounts ...*runtimeapi.Mount) string {
		t.Helper()
		r, err := e.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: sb.PodSandboxId, SandboxConfig: sbc, Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name}, Image: &runtimeapi.ImageSpec{Image: pulled.ImageRef},
			Command: []string{"/bin/sh", "-c", script}, LogPath: name + "/0.log", Mounts: mounts,
			Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: mem, CpuShares: 512}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: r.ContainerId}); err != nil {
			t.Fatal(err)
		}
		return r.ContainerId
	}
	web := create("web", `hostname; cat /etc/resolv.conf; mkdir -p /www && echo pong-cri > /www/index.html && exec httpd -f -p 8080 -h /www`, 96<<20)
	// ender ends when the test says so, through a volume.
	signal := t.TempDir()
	ender := create("ender", `while [ ! -e /signal/go ]; do sleep 0.05; done; exit 7`, 0, &runtimeapi.Mount{HostPath: signal, ContainerPath: "/signal"})
	e.waitContainer(t, web, runtimeapi.ContainerState_CONTAINER_RUNNING)
	log := waitLog(t, filepath.Join(logDir, "web", "0.log"), "ndots:5")
	for _, want := range []string{" stdout F web-host\n", " stdout F nameserver 10.96.0.10\n", " stdout F search e2e.svc.cluster.local\n", " stdout F options ndots:5\n"} {
		if !strings.Contains(log, want) {
			t.Errorf("the container's log lacks %q:\n%s", want, log)
		}
	}
	c := http.Client{Timeout: 10 * time.Second}
	eventually(t, 10*time.Second, func() error {
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", hp))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if b, _ := io.ReadAll(resp.Body); !strings.HasPrefix(string(b), "pong-cri") {
			return fmt.Errorf("answer %q", b)
		}
		return nil
	})
	// The sandbox's network counters saw that request.
	pst, err := e.rs.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: sb.PodSandboxId})
	if err != nil {
		t.Fatal(err)
	}
	if n := pst.Stats.GetLinux().GetNetwork(); n.GetDefaultInterface().GetRxBytes().GetValue() == 0 || n.GetDefaultInterface().GetTxBytes().GetValue() == 0 {
		t.Errorf("PodSandboxStats network: %v; want the pod's interface with traffic", n)
	}
	st, err := e.rs.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: web})
	if err != nil {
		t.Fatal(err)
	}
	if st.Stats.Memory.GetWorkingSetBytes().GetValue() == 0 || st.Stats.Cpu.GetUsageCoreNanoSeconds().GetValue() == 0 {
		t.Errorf("ContainerStats of a running container: %v", st.Stats)
	}
	// The node's accounting counts the CRI's containers.
	node, err := e.c.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if node.Allocated.MemoryBytes != 96<<20 || node.Allocated.CPUMillis != 2*(512*1000/1024) {
		t.Errorf("the node reports %+v allocated; want the containers' 96 MiB and 2x500m", node.Allocated)
	}

	report := func() (*runtimeapi.PodSandboxStatus, map[string]*runtimeapi.ContainerStatus) {
		t.Helper()
		pss, err := e.rs.PodSandboxStatus(ctxT(t, 10*time.Second), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sb.PodSandboxId})
		if err != nil {
			t.Fatal(err)
		}
		cs := map[string]*runtimeapi.ContainerStatus{}
		for _, id := range []string{web, ender} {
			r, err := e.rs.ContainerStatus(ctxT(t, 10*time.Second), &runtimeapi.ContainerStatusRequest{ContainerId: id})
			if err != nil {
				t.Fatal(err)
			}
			cs[id] = r.Status
		}
		return pss.Status, cs
	}
	sbBefore, before := report()
	if before[ender].State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("ender is %v before the agent is killed", before[ender].State)
	}
	// The agent dies; the sandbox goes on and ender ends meanwhile.
	e.kill(t)
	if err := os.WriteFile(filepath.Join(signal, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.waitApp(t, sb.PodSandboxId, "ender-"+ender[:12], "exited")
	e.startCRI(t)
	ended := e.waitContainer(t, ender, runtimeapi.ContainerState_CONTAINER_EXITED)
	if ended.ExitCode != 7 || ended.Reason != "Error" || ended.FinishedAt <= ended.StartedAt {
		t.Errorf("ender, which ended while the agent was down: exit %d, reason %q, started %d, finished %d", ended.ExitCode, ended.Reason, ended.StartedAt, ended.FinishedAt)
	}
	sbAfter, after := report()
	if diff := cmp.Diff(sbBefore, sbAfter, protocmp.Transform()); diff != "" {
		t.Errorf("the sandbox after an agent restart (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(before[web], after[web], protocmp.Transform()); diff != "" {
		t.Errorf("the running container after an agent restart (-before +after):\n%s", diff)
	}
	if a, b := after[ender], before[ender]; a.CreatedAt != b.CreatedAt || a.StartedAt != b.StartedAt || a.LogPath != b.LogPath || a.Metadata.Attempt != b.Metadata.Attempt {
		t.Errorf("ender after the restart: %v; before: %v", a, b)
	}
	eventually(t, 10*time.Second, func() error {
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", hp))
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})

	if _, err := e.rs.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: web, Timeout: 2}); err != nil {
		t.Fatal(err)
	}
	e.waitContainer(t, web, runtimeapi.ContainerState_CONTAINER_EXITED)
	for _, id := range []string{web, ender, web} {
		if _, err := e.rs.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Errorf("RemoveContainer %s: %v", id, err)
		}
	}
	if _, err := e.rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: web}); status.Code(err) != codes.NotFound {
		t.Errorf("ContainerStatus of a removed container: %v, want NotFound", err)
	}
	for range 2 {
		if _, err := e.rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.PodSandboxId}); err != nil {
			t.Errorf("StopPodSandbox: %v", err)
		}
	}
	if _, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", hp)); err == nil {
		t.Errorf("port %d still answers after the sandbox was stopped", hp)
	}
	for range 2 {
		if _, err := e.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.PodSandboxId}); err != nil {
			t.Errorf("RemovePodSandbox: %v", err)
		}
	}
	if l, err := e.rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err != nil || len(l.Items) != 0 {
		t.Errorf("ListPodSandbox after removal: %v, %v", l, err)
	}
	node, err = e.c.Node(ctx)
	if err != nil || node.Allocated.MemoryBytes != 0 || node.Allocated.CPUMillis != 0 {
		t.Errorf("the node after removal: %+v allocated (%v); want nothing", node.Allocated, err)
	}
}
