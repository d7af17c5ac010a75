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

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/tests/k8s"
	"github.com/karman-project/karman/tests/leakcheck"
	"github.com/karman-project/karman/tests/testenv"
)

// The static pods of TestStandaloneKubelet: a web server (the nginx
// look-alike) and a container that crashes two seconds after it starts,
// restarted by the kubelet per restartPolicy Always.
const (
	webManifest = `apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: nginx
    image: registry.k8s.io/e2e-test-images/nginx:1.14-2
    ports:
    - containerPort: 80
`
	crashManifest = `apiVersion: v1
kind: Pod
metadata:
  name: crash
spec:
  restartPolicy: Always
  containers:
  - name: crash
    image: registry.k8s.io/e2e-test-images/busybox:1.29-2
    command: ["sh", "-c", "echo started; sleep 2; exit 1"]
`
)

// TestStandaloneKubelet runs the real kubelet (k8s.io/kubernetes v1.37.2,
// built by scripts/k8s-build.sh) with no API server on a fresh karman
// agent's CRI socket (issue 18, "Must work" 1): static pods from its
// manifest directory run, fetched through registries.conf from the
// loopback registry of look-alikes and verified against the node's
// signature policy; a container that exits is restarted (its attempt
// count rises); removing the manifests tears the pods down with nothing
// left of them, on the host or in the kubelet's directories.
func TestStandaloneKubelet(t *testing.T) {
	testenv.RequireRoot(t, "the CRI runtime creates namespaces, mounts and cgroups")
	testenv.SkipIfShort(t, "the kubelet's pod teardown waits for its container garbage collection (a minute)")
	k8s.RequireBinaries(t, "kubelet")
	bin := filepath.Dir(testenv.Binary(t))
	node := k8s.StartNode(t, bin)
	leaks := leakcheck.Start(t, leakcheck.Scope{DataDir: node.DataDir, NetNSDir: node.NetNSDir})
	kl := k8s.StartKubelet(t, k8s.KubeletOptions{Endpoint: node.Endpoint()})
	rs := node.Runtime(t)

	kl.WriteManifest(t, "web", webManifest)
	kl.WriteManifest(t, "crash", crashManifest)
	webPod, crashPod := "web-"+kl.NodeName, "crash-"+kl.NodeName

	// The web server runs and serves on its pod's address.
	web := waitFor(t, 3*time.Minute, "the web pod's container running", func() (*runtimeapi.Container, bool) {
		cs := containersOf(t, rs, webPod)
		for _, c := range cs {
			if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
				return c, true
			}
		}
		return nil, false
	})
	if web.Metadata.Name != "nginx" || !strings.Contains(web.Image.GetImage()+" "+web.Image.GetUserSpecifiedImage(), "nginx") {
		t.Errorf("web container: name %q, image %v (%s): want nginx of e2e-test-images/nginx", web.Metadata.Name, web.Image, web.ImageRef)
	}
	sb, err := rs.PodSandboxStatus(ctxT(t, 30*time.Second), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: web.PodSandboxId})
	if err != nil {
		t.Fatal(err)
	}
	if got := sb.Status.Metadata.Namespace; got != "default" {
		t.Errorf("web sandbox namespace %q, want default", got)
	}
	ip := sb.Status.GetNetwork().GetIp()
	if ip == "" {
		t.Fatalf("the web sandbox has no address: %v", sb.Status)
	}
	body := waitFor(t, time.Minute, "the web pod answering on "+ip+":80", func() (string, bool) {
		hc := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 2 * time.Second}
		resp, err := hc.Get("http://" + ip + "/")
		if err != nil {
			return err.Error(), false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), resp.StatusCode == http.StatusOK
	})
	if !strings.Contains(body, "Welcome to nginx!") {
		t.Errorf("the web pod served %q, want nginx's welcome page", body)
	}

	// The crashing container is restarted: a later attempt runs after an
	// earlier one exited with the code its command gave, its output in
	// the kubelet's log directory. (The kubelet removes an exited
	// attempt's container and log soon after the next one starts, so
	// each is looked at as soon as it is seen.)
	var exited *runtimeapi.ContainerStatus
	var exitedLog string
	seen := map[string]bool{}
	waitFor(t, 3*time.Minute, "the crash pod's container restarted twice", func() (string, bool) {
		top := uint32(0)
		for _, c := range containersOf(t, rs, crashPod) {
			top = max(top, c.Metadata.Attempt)
			if c.State != runtimeapi.ContainerState_CONTAINER_EXITED || seen[c.Id] || exitedLog != "" {
				continue
			}
			st, err := rs.ContainerStatus(ctxT(t, 30*time.Second), &runtimeapi.ContainerStatusRequest{ContainerId: c.Id})
			if err != nil {
				continue // removed meanwhile
			}
			seen[c.Id] = true
			exited = st.Status
			if b, err := os.ReadFile(exited.LogPath); err == nil && strings.Contains(string(b), "started") {
				exitedLog = string(b)
			}
		}
		return fmt.Sprintf("attempt %d, %d exited seen, log %q", top, len(seen), exitedLog), top >= 2 && exitedLog != ""
	})
	if exited.ExitCode != 1 {
		t.Errorf("the crashed container (attempt %d) exited with %d, want 1 (its command's)", exited.Metadata.Attempt, exited.ExitCode)
	}
	if !strings.HasPrefix(exited.LogPath, kl.PodLogsDir+"/") {
		t.Errorf("the container's log %s is not in the kubelet's podLogsDir %s", exited.LogPath, kl.PodLogsDir)
	}

	// Removing the manifests tears both pods down: the kubelet stops and
	// removes their sandboxes (its container garbage collection runs every
	// minute), and Karman leaves nothing of them.
	leaks.TrackPods()
	kl.RemoveManifest(t, "web")
	kl.RemoveManifest(t, "crash")
	waitFor(t, 4*time.Minute, "no sandbox and no container left", func() (string, bool) {
		sbs, err := rs.ListPodSandbox(ctxT(t, 30*time.Second), &runtimeapi.ListPodSandboxRequest{})
		if err != nil {
			t.Fatal(err)
		}
		cs, err := rs.ListContainers(ctxT(t, 30*time.Second), &runtimeapi.ListContainersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%d sandboxes, %d containers", len(sbs.Items), len(cs.Containers)), len(sbs.Items) == 0 && len(cs.Containers) == 0
	})
	leaks.Check()
	// The kubelet's own directories hold nothing of the pods either.
	waitFor(t, 2*time.Minute, "the kubelet's pod and log directories empty", func() (string, bool) {
		var left []string
		for _, d := range []string{filepath.Join(kl.RootDir, "pods"), kl.PodLogsDir} {
			ents, _ := os.ReadDir(d)
			for _, e := range ents {
				left = append(left, filepath.Join(d, e.Name()))
			}
		}
		return strings.Join(left, " "), len(left) == 0
	})
	// (The kubelet bind-mounts its root directory on itself, for mount
	// propagation; nothing may be mounted inside it.)
	if ms := k8s.MountsUnder(kl.RootDir); len(ms) > 0 && !(len(ms) == 1 && ms[0] == kl.RootDir) {
		t.Errorf("mounts left under the kubelet's root directory: %q", ms)
	}
	if !kl.Alive() {
		t.Errorf("the kubelet exited")
	}
}

// containersOf lists the containers of the pod named pod (any namespace).
func containersOf(t *testing.T, rs runtimeapi.RuntimeServiceClient, pod string) []*runtimeapi.Container {
	t.Helper()
	r, err := rs.ListContainers(ctxT(t, 30*time.Second), &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"io.kubernetes.pod.name": pod}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r.Containers
}

// waitFor polls f every 200 ms until it says done, for at most d; the
// test fails naming what, with f's last value.
func waitFor[T any](t *testing.T, d time.Duration, what string, f func() (T, bool)) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		v, ok := f()
		if ok {
			return v
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting %s for %s: last %v", d, what, v)
			return v
		case <-time.After(200 * time.Millisecond):
		}
	}
}
