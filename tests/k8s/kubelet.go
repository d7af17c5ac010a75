package k8s

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// KubeletOptions says how StartKubelet runs a kubelet.
type KubeletOptions struct {
	// Endpoint is the CRI endpoint (Node.Endpoint).
	Endpoint string
	// Kubeconfig, if set, joins the kubelet to that API server; empty runs
	// it standalone (static pods only).
	Kubeconfig string
	// NodeName is the node's name (default: karman-<random>); static pods
	// are named POD-NODENAME.
	NodeName string
	// Config is merged over the KubeletConfiguration StartKubelet writes
	// (KubeletConfig), key by key.
	Config map[string]any
	// Args are more command-line flags.
	Args []string
}

// Kubelet is a running kubelet.
type Kubelet struct {
	// RootDir is its --root-dir, Manifests its staticPodPath, PodLogsDir
	// its podLogsDir; all private to it.
	RootDir, Manifests, PodLogsDir string
	// NodeName is the node it runs as.
	NodeName string
	// Port is its API's port (HTTPS, on 127.0.0.1; anonymous requests
	// refused) and HealthzPort its health check's (HTTP, on 127.0.0.1).
	Port, HealthzPort int
	// ConfigPath is the KubeletConfiguration file, Log its output.
	ConfigPath, Log string
	// PID is its process.
	PID int
}

// KubeletConfig is the KubeletConfiguration a kubelet runs with on this
// kind of host (docs/kubernetes.md, "A standalone kubelet"): cgroup v1
// accepted, cgroupfs (PID 1 is not systemd), swap tolerated, no QoS
// cgroups or node allocatable enforcement, the read-only port off, no
// anonymous or webhook authentication (no API server to ask), and a
// crash-loop back-off capped at a second so that restarts show quickly.
func KubeletConfig(manifests, podLogsDir string, port, healthzPort int) map[string]any {
	return map[string]any{
		"apiVersion":             "kubelet.config.k8s.io/v1beta1",
		"kind":                   "KubeletConfiguration",
		"failCgroupV1":           false,
		"cgroupDriver":           "cgroupfs",
		"failSwapOn":             false,
		"cgroupsPerQOS":          false,
		"enforceNodeAllocatable": []string{},
		"staticPodPath":          manifests,
		"fileCheckFrequency":     "1s",
		"podLogsDir":             podLogsDir,
		"address":                "127.0.0.1",
		"port":                   port,
		"readOnlyPort":           0,
		"healthzBindAddress":     "127.0.0.1",
		"healthzPort":            healthzPort,
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": false},
			"webhook":   map[string]any{"enabled": false},
		},
		"authorization": map[string]any{"mode": "AlwaysAllow"},
		// The host's disk is shared with other work: no pod is evicted
		// for its use.
		"evictionHard":     map[string]string{},
		"crashLoopBackOff": map[string]any{"maxContainerRestartPeriod": "1s"},
		// Root here lacks CAP_SYS_RESOURCE: no lower score than its own.
		"oomScoreAdj": 0,
	}
}

// StartKubelet starts the kubelet built by scripts/k8s-build.sh against
// o.Endpoint, on private directories, with HTTP(S)_PROXY at a dead
// loopback port, and waits until its health check answers. It is stopped
// by PID in t.Cleanup, and what it mounted under its root directory is
// unmounted; the kernel settings it changes are restored (keepKernelTunables).
func StartKubelet(t testing.TB, o KubeletOptions) *Kubelet {
	t.Helper()
	RequireBinaries(t, "kubelet")
	dir := t.TempDir()
	k := &Kubelet{
		RootDir:    filepath.Join(dir, "root"),
		Manifests:  filepath.Join(dir, "manifests"),
		PodLogsDir: filepath.Join(dir, "pod-logs"),
		NodeName:   o.NodeName,
		ConfigPath: filepath.Join(dir, "kubelet.json"),
		Log:        filepath.Join(dir, "kubelet.log"),
		Port:       freePort(t),
		// healthz is on a port of its own.
		HealthzPort: freePort(t),
	}
	if k.NodeName == "" {
		k.NodeName = "karman-" + randHex(t, 3)
	}
	for _, d := range []string{k.RootDir, k.Manifests, k.PodLogsDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := KubeletConfig(k.Manifests, k.PodLogsDir, k.Port, k.HealthzPort)
	maps.Copy(cfg, o.Config)
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.ConfigPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--config", k.ConfigPath,
		"--root-dir", k.RootDir,
		"--cert-dir", filepath.Join(k.RootDir, "pki"),
		"--container-runtime-endpoint", o.Endpoint,
		"--hostname-override", k.NodeName,
		// Its address is given: the kubelet looks up no host name.
		"--node-ip", "127.0.0.1",
		"--v", "2",
	}
	if o.Kubeconfig != "" {
		args = append(args, "--kubeconfig", o.Kubeconfig)
	}
	args = append(args, o.Args...)
	logf, err := os.Create(k.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	keepKernelTunables(t)
	cmd := exec.Command(Binary("kubelet"), args...)
	cmd.Env = append(os.Environ(), "HTTP_PROXY="+DeadProxy, "HTTPS_PROXY="+DeadProxy,
		"http_proxy="+DeadProxy, "https_proxy="+DeadProxy, "NO_PROXY=", "no_proxy=")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	k.PID = cmd.Process.Pid
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the kubelet's log (%s), its end:\n%s", k.Log, tail(k.Log, 80))
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		for _, m := range MountsUnder(k.RootDir) {
			unix.Unmount(m, unix.MNT_DETACH)
		}
	})

	hc := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 2 * time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", k.HealthzPort)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case <-done:
			t.Fatalf("the kubelet exited (%s); its log's end:\n%s", cmd.ProcessState, tail(k.Log, 80))
		default:
		}
		if resp, err := hc.Get(url); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "ok" {
				return k
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the kubelet's %s did not answer ok in 2 minutes", url)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// WriteManifest puts a static pod's manifest (YAML or JSON) in the
// kubelet's staticPodPath as NAME.yaml.
func (k *Kubelet) WriteManifest(t testing.TB, name, manifest string) {
	t.Helper()
	// Written beside and renamed, so the kubelet never reads half of it
	// (it ignores files whose name starts with a dot).
	tmp := filepath.Join(k.Manifests, "."+name+".yaml")
	if err := os.WriteFile(tmp, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(k.Manifests, name+".yaml")); err != nil {
		t.Fatal(err)
	}
}

// RemoveManifest takes NAME.yaml out of the staticPodPath.
func (k *Kubelet) RemoveManifest(t testing.TB, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(k.Manifests, name+".yaml")); err != nil {
		t.Fatal(err)
	}
}

// Alive says whether the kubelet still runs.
func (k *Kubelet) Alive() bool { return syscall.Kill(k.PID, 0) == nil }

// freePort is a loopback TCP port free now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// MountsUnder lists the mount points at or under dir, deepest first.
func MountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	dir = filepath.Clean(dir)
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 5 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}
