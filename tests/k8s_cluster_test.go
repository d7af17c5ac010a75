package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/tests/k8s"
	"github.com/karman-project/karman/tests/leakcheck"
	"github.com/karman-project/karman/tests/testenv"
)

// k8sSetup is the hint for a missing part of the cluster.
const k8sSetup = "scripts/setup.sh --tests (it builds the Kubernetes programs and etcd with scripts/k8s-build.sh)"

// TestK8sCluster runs a one-node Kubernetes cluster (tests/k8s: etcd,
// kube-apiserver, kube-scheduler, kube-controller-manager, the kubelet)
// whose runtime is karman's agent, started by tests/conformance/serve.sh
// as `make conformance` starts it (the signed look-alikes in a loopback
// registry, registries.conf, the test key trusted), and drives it with
// kubectl: one cluster for every subtest, in order.
func TestK8sCluster(t *testing.T) {
	testenv.RequireRoot(t, "the kubelet and the CRI runtime create namespaces, mounts and cgroups")
	testenv.SkipIfShort(t, "a Kubernetes cluster runs for minutes")
	k8s.RequireBinaries(t, "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl")
	bin := filepath.Dir(testenv.Binary(t))
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	t.Cleanup(cancel)

	node := k8s.StartNode(t, bin)
	top := t // what lives as long as the cluster is bound to it, not to a subtest
	lc := leakcheck.Start(t, leakcheck.Scope{DataDir: node.DataDir, NetNSDir: node.NetNSDir})
	sysctls := readSysctls(t)
	c, err := k8s.Start(ctx, k8s.Options{Dir: t.TempDir(), CRISocket: node.Sock, Log: testWriter{t}})
	if err != nil {
		t.Fatalf("%v\nthe agent's log: %s", err, node.AgentLog)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []string{"kubelet", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
				t.Logf("the end of %s's log:\n%s", n, tailFile(c.LogFile(n), 25))
			}
		}
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	rs := node.Runtime(t)
	kubectl := func(t *testing.T, stdin string, args ...string) string {
		t.Helper()
		var in io.Reader
		if stdin != "" {
			in = strings.NewReader(stdin)
		}
		out, err := c.Kubectl(ctx, in, args...)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	waitPods := func(t *testing.T, sel string, d time.Duration, ok func([]k8s.Pod) bool) []k8s.Pod {
		t.Helper()
		ps, err := c.WaitPods(ctx, sel, d, ok)
		if err != nil {
			t.Fatalf("%v; last seen:\n%s", err, kubectl(t, "", "get", "pods", "-o", "wide", "-l", sel))
		}
		return ps
	}
	// An image nobody signed, under a name the policy requires a
	// signature for (registry.k8s.io: the test key).
	unsigned := "registry.k8s.io/e2e-test-images/unsigned:1"
	if out, err := exec.CommandContext(ctx, filepath.Join(bin, "karman-testimage"), "--push", node.Registry+"/e2e-test-images/unsigned:1").CombinedOutput(); err != nil {
		t.Fatalf("pushing the unsigned image: %v: %s", err, out)
	}

	t.Run("NodeReady", func(t *testing.T) {
		var n k8s.APINode
		if err := c.Get(ctx, "/api/v1/nodes/"+c.NodeName, &n); err != nil {
			t.Fatal(err)
		}
		if ok, why := n.Ready(); !ok {
			t.Fatalf("node not Ready: %s", why)
		}
		if v := n.Status.NodeInfo.ContainerRuntimeVersion; !strings.HasPrefix(v, "karman://") || v == "karman://Unknown" {
			t.Errorf("containerRuntimeVersion %q, want karman://VERSION (the kubelet says Unknown for a version that is not semantic)", v)
		}
		// No reservation and no eviction threshold (k8s.KubeletConfig):
		// all of the machine is allocatable.
		cpus := strconv.Itoa(onlineCPUs(t))
		memKi := memTotalKi(t)
		for _, check := range []struct{ what, got, want string }{
			{"capacity cpu", n.Status.Capacity["cpu"], cpus},
			{"allocatable cpu", n.Status.Allocatable["cpu"], cpus},
			{"capacity memory", n.Status.Capacity["memory"], fmt.Sprintf("%dKi", memKi)},
			{"allocatable memory", n.Status.Allocatable["memory"], fmt.Sprintf("%dKi", memKi)},
		} {
			if check.got != check.want {
				t.Errorf("%s = %q, want %q (the machine's)", check.what, check.got, check.want)
			}
		}
		t.Logf("node %s: capacity %v, allocatable %v, %s", n.Metadata.Name, n.Status.Capacity, n.Status.Allocatable, n.Status.NodeInfo.ContainerRuntimeVersion)
	})

	// Everything the later subtests use, applied at once.
	kubectl(t, strings.Join([]string{
		k8s.WebDeployment("web", 3),
		k8s.BusyboxPod("echo", "", "echo hello from karman; exec sleep 3600", ""),
		k8s.BusyboxPod("liveness", "", "touch /tmp/alive; sleep 6; rm /tmp/alive; exec sleep 3600",
			"    livenessProbe:\n      exec: {command: [cat, /tmp/alive]}\n      initialDelaySeconds: 1\n      periodSeconds: 1\n      failureThreshold: 1\n"),
		k8s.BusyboxPod("signed", "", "exec sleep 3600", ""),
		k8s.BusyboxPod("unsigned", unsigned, "exec sleep 3600", ""),
	}, "---\n"), "apply", "-f", "-")

	var web []k8s.Pod
	t.Run("Deployment", func(t *testing.T) {
		web = waitPods(t, "app=web", 3*time.Minute, k8s.AllReady(3))
		out := kubectl(t, "", "get", "deployment", "web", "-o", "jsonpath={.status.readyReplicas}/{.status.replicas}")
		if out != "3/3" {
			t.Errorf("deployment web: %s ready, want 3/3", out)
		}
		for _, p := range web {
			if p.Spec.NodeName != c.NodeName {
				t.Errorf("pod %s on node %q, want %q", p.Metadata.Name, p.Spec.NodeName, c.NodeName)
			}
		}
	})

	t.Run("Logs", func(t *testing.T) {
		waitPods(t, "app=echo", time.Minute, k8s.AllReady(1))
		var out string
		for range 50 {
			if out = kubectl(t, "", "logs", "echo"); strings.Contains(out, "hello from karman") {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("kubectl logs echo = %q, want %q", out, "hello from karman")
	})

	t.Run("Exec", func(t *testing.T) {
		out := kubectl(t, "", "exec", "echo", "--", "sh", "-c", "cat /etc/hostname; echo pid1=$(cat /proc/1/comm)")
		if !strings.Contains(out, "echo\n") {
			t.Errorf("kubectl exec: hostname %q, want the pod's name", out)
		}
		out = kubectl(t, "stdin through the API server\n", "exec", "-i", "echo", "--", "cat")
		if out != "stdin through the API server\n" {
			t.Errorf("kubectl exec -i cat = %q", out)
		}
		if _, err := c.Kubectl(ctx, nil, "exec", "echo", "--", "sh", "-c", "exit 7"); err == nil || !strings.Contains(err.Error(), "exit status 7") {
			t.Errorf("kubectl exec of exit 7: %v, want exit status 7", err)
		}
	})

	t.Run("PortForward", func(t *testing.T) {
		if len(web) == 0 {
			t.Fatal("no web pod")
		}
		pctx, stop := context.WithTimeout(ctx, time.Minute)
		defer stop()
		cmd := c.KubectlCmd(pctx, "port-forward", "--address", "127.0.0.1", "pod/"+web[0].Metadata.Name, ":80")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { stop(); _ = cmd.Wait() }()
		re := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 80`)
		sc := bufio.NewScanner(stdout)
		port := ""
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				port = m[1]
				break
			}
		}
		if port == "" {
			t.Fatal("kubectl port-forward printed no local port")
		}
		go func() { _, _ = io.Copy(io.Discard, stdout) }()
		for i := range 3 { // one connection each, through one stream
			body, err := httpGet("http://127.0.0.1:" + port + "/")
			if err != nil || !strings.Contains(body, "Welcome to nginx!") {
				t.Fatalf("GET %d through port-forward: %v %q", i, err, body)
			}
		}
	})

	t.Run("SummaryStats", func(t *testing.T) {
		var sum struct {
			Node struct {
				NodeName string `json:"nodeName"`
				CPU      struct {
					UsageNanoCores *uint64 `json:"usageNanoCores"`
				} `json:"cpu"`
			} `json:"node"`
			Pods []struct {
				PodRef struct {
					Name string `json:"name"`
				} `json:"podRef"`
				Containers []struct {
					Name   string `json:"name"`
					Memory struct {
						WorkingSetBytes *uint64 `json:"workingSetBytes"`
					} `json:"memory"`
					CPU struct {
						UsageCoreNanoSeconds *uint64 `json:"usageCoreNanoSeconds"`
					} `json:"cpu"`
				} `json:"containers"`
			} `json:"pods"`
		}
		var missing []string
		for range 30 {
			if err := c.KubeletGet(ctx, "/stats/summary", &sum); err != nil {
				t.Fatal(err)
			}
			missing = nil
			for _, p := range web {
				found := false
				for _, sp := range sum.Pods {
					for _, sc := range sp.Containers {
						if sp.PodRef.Name == p.Metadata.Name && sc.Name == "nginx" && sc.Memory.WorkingSetBytes != nil && *sc.Memory.WorkingSetBytes > 0 && sc.CPU.UsageCoreNanoSeconds != nil {
							found = true
						}
					}
				}
				if !found {
					missing = append(missing, p.Metadata.Name)
				}
			}
			if len(missing) == 0 {
				break
			}
			time.Sleep(time.Second)
		}
		if sum.Node.NodeName != c.NodeName {
			t.Errorf("summary of node %q, want %q", sum.Node.NodeName, c.NodeName)
		}
		if len(missing) > 0 {
			b, _ := json.Marshal(sum.Pods)
			t.Errorf("the kubelet's summary has no memory and CPU of the nginx container of %v:\n%s", missing, b)
		}
	})

	t.Run("SignedImages", func(t *testing.T) {
		waitPods(t, "app=signed", time.Minute, k8s.AllReady(1))
		ps := waitPods(t, "app=unsigned", time.Minute, func(ps []k8s.Pod) bool {
			return len(ps) == 1 && len(ps[0].Status.ContainerStatuses) == 1 && ps[0].Status.ContainerStatuses[0].State.Waiting != nil &&
				slices.Contains([]string{"ErrImagePull", "ImagePullBackOff"}, ps[0].Status.ContainerStatuses[0].State.Waiting.Reason)
		})
		if cs := ps[0].Status.ContainerStatuses[0]; cs.State.Running != nil || cs.ContainerID != "" {
			t.Errorf("the unsigned image's container was created: %+v", cs)
		}
		desc := kubectl(t, "", "describe", "pod", "unsigned")
		if !strings.Contains(desc, "ErrImagePull") || !strings.Contains(desc, "requires a signature") || !strings.Contains(desc, "found no signature") {
			t.Errorf("kubectl describe pod unsigned shows no ErrImagePull with karman's refusal:\n%s", desc)
		}
		t.Logf("the refusal: %s", firstLine(desc, "Failed to pull image"))
	})

	t.Run("LivenessRestart", func(t *testing.T) {
		ps := waitPods(t, "app=liveness", 2*time.Minute, func(ps []k8s.Pod) bool {
			return len(ps) == 1 && len(ps[0].Status.ContainerStatuses) == 1 && ps[0].Status.ContainerStatuses[0].RestartCount >= 1
		})
		t.Logf("liveness: restartCount %d", ps[0].Status.ContainerStatuses[0].RestartCount)
		ev := kubectl(t, "", "get", "events", "--field-selector", "involvedObject.name=liveness", "-o", "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}")
		if !strings.Contains(ev, "Unhealthy") || !strings.Contains(ev, "Killing") {
			t.Errorf("no Unhealthy and Killing events for the liveness pod:\n%s", ev)
		}
	})

	t.Run("AgentKilled", func(t *testing.T) {
		// The pods whose containers must not change (the liveness pod's
		// restarts by design).
		steady := func() map[string]string {
			t.Helper()
			out := map[string]string{}
			ps, err := c.Pods(ctx, "app in (web,echo,signed)")
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range ps {
				for _, cs := range p.Status.ContainerStatuses {
					out[p.Metadata.Name+"/"+cs.Name] = fmt.Sprintf("%s restarts=%d ready=%v", cs.ContainerID, cs.RestartCount, cs.Ready)
				}
			}
			return out
		}
		criState := func() (containers, sandboxes []string) {
			t.Helper()
			cl, err := rs.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
			if err != nil {
				t.Fatal(err)
			}
			for _, ct := range cl.Containers {
				if ct.Labels["io.kubernetes.pod.name"] != "liveness" {
					containers = append(containers, ct.Id+" "+ct.State.String())
				}
			}
			sl, err := rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range sl.Items {
				sandboxes = append(sandboxes, s.Id+" "+s.State.String())
			}
			slices.Sort(containers)
			slices.Sort(sandboxes)
			return
		}
		serving := func(when string) {
			t.Helper()
			for _, p := range web {
				if body, err := httpGet("http://" + p.Status.PodIP + "/"); err != nil || !strings.Contains(body, "Welcome to nginx!") {
					t.Errorf("%s: pod %s (%s) does not serve: %v %q", when, p.Metadata.Name, p.Status.PodIP, err, body)
				}
			}
		}
		before := steady()
		ctrs, sbs := criState()
		restart := node.KillAgent(top)
		serving("the agent dead")
		time.Sleep(3 * time.Second) // the kubelet's relists meet a dead runtime
		serving("the agent dead for 3 s")
		if err := restart(ctx); err != nil {
			t.Fatal(err)
		}
		ctrs2, sbs2 := criState()
		if !slices.Equal(ctrs, ctrs2) || !slices.Equal(sbs, sbs2) {
			t.Errorf("the restarted agent reports other containers or sandboxes:\nbefore %v %v\nafter  %v %v", ctrs, sbs, ctrs2, sbs2)
		}
		// The kubelet relists every second and syncs each pod at least
		// every minute; 20 s of it must change nothing.
		for range 20 {
			time.Sleep(time.Second)
			if after := steady(); !maps2Equal(before, after) {
				t.Fatalf("the kubelet changed containers after the agent restarted:\nbefore %v\nafter  %v", before, after)
			}
		}
		if ctrs3, sbs3 := criState(); !slices.Equal(ctrs, ctrs3) || !slices.Equal(sbs, sbs3) {
			t.Errorf("containers or sandboxes changed after the restart:\nbefore %v %v\nafter  %v %v", ctrs, sbs, ctrs3, sbs3)
		}
		serving("after the restart")
		t.Logf("%d containers, %d sandboxes unchanged; agent pid %d", len(ctrs), len(sbs), node.AgentPID)
	})

	t.Run("NoTrafficOffLoopback", func(t *testing.T) {
		var pods []net.IP
		ps, err := c.Pods(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if ip := net.ParseIP(p.Status.PodIP); ip != nil {
				pods = append(pods, ip)
			}
		}
		pids := []int{node.AgentPID}
		for _, pid := range c.PIDs() {
			pids = append(pids, pid)
		}
		all, err := k8s.Connections(pids)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) == 0 { // the components talk to each other: the check must see it
			t.Fatal("no connection of the components seen at all")
		}
		off, err := k8s.OffLoopback(pids, pods)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d connections of %d processes, %d off loopback", len(all), len(pids), len(off))
		for _, o := range off {
			t.Errorf("a connection off loopback: %s", o)
		}
	})

	t.Run("ScaleToZero", func(t *testing.T) {
		lc.TrackPods()
		kubectl(t, "", "scale", "deployment", "web", "--replicas=0")
		waitPods(t, "app=web", 2*time.Minute, func(ps []k8s.Pod) bool { return len(ps) == 0 })
		// The kubelet stops the sandboxes at once and removes them at
		// its next garbage collection (every minute).
		var left []string
		for range 100 {
			left = karmanPodsOf(t, bin, node.DataDir, "web")
			if len(left) == 0 {
				break
			}
			time.Sleep(time.Second)
		}
		if len(left) > 0 {
			t.Errorf("karman still has pods of deployment web after 100 s: %v", left)
		}
	})

	t.Run("DeleteNode", func(t *testing.T) {
		lc.TrackPods()
		kubectl(t, "", "delete", "node", c.NodeName)
		// The pod garbage collector deletes the pods of a node that is
		// gone; the kubelet then stops them.
		waitPods(t, "", 3*time.Minute, func(ps []k8s.Pod) bool { return len(ps) == 0 })
		var running []string
		for range 60 {
			running = nil
			for _, p := range karmanList(t, bin, node.DataDir) {
				if p.State == stage0.Running {
					running = append(running, p.UUID+" "+p.Name)
				}
			}
			if len(running) == 0 {
				break
			}
			time.Sleep(time.Second)
		}
		if len(running) > 0 {
			t.Errorf("pods still running after the node was deleted: %v", running)
		}
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
		// The teardown: the runtime removes the sandboxes the kubelet
		// stopped (it removes them at its next garbage collection,
		// every minute); then nothing of the pods may be left.
		if err := k8s.RemoveSandboxes(ctx, rs); err != nil {
			t.Fatal(err)
		}
		if after := readSysctls(t); !maps2Equal(sysctls, after) {
			t.Errorf("the kernel settings are not as the cluster found them: before %v, after %v", sysctls, after)
		}
		if ps := karmanList(t, bin, node.DataDir); len(ps) > 0 {
			t.Errorf("karman still lists %d pods after the teardown", len(ps))
		}
		lc.Check()
	})
}

// readSysctls reads the kernel settings a kubelet changes.
func readSysctls(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, k := range []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops", "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"} {
		b, err := os.ReadFile("/proc/sys/" + k)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = strings.TrimSpace(string(b))
	}
	return out
}

// karmanList is `karman list --format json` of the agent's data directory.
func karmanList(t *testing.T, bin, dataDir string) []stage0.PodInfo {
	t.Helper()
	out, err := exec.Command(filepath.Join(bin, "karman-full"), "--dir", dataDir, "list", "--format", "json").Output()
	if err != nil {
		t.Fatalf("karman list: %v", err)
	}
	var ps []stage0.PodInfo
	if err := json.Unmarshal(out, &ps); err != nil {
		t.Fatalf("karman list: %v", err)
	}
	return ps
}

// karmanPodsOf lists the karman pods of the Kubernetes pods labelled
// app=APP, with their apps.
func karmanPodsOf(t *testing.T, bin, dataDir, app string) []string {
	t.Helper()
	var out []string
	for _, p := range karmanList(t, bin, dataDir) {
		if p.Labels["app"] == app || strings.Contains(p.Name, app+"-") {
			var apps []string
			for _, a := range p.Apps {
				apps = append(apps, a.Name+"="+a.State)
			}
			out = append(out, fmt.Sprintf("%s %s %s %v", p.UUID, p.Name, p.State, apps))
		}
	}
	return out
}

func maps2Equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func httpGet(url string) (string, error) {
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := hc.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// onlineCPUs counts /sys/devices/system/cpu/online, as cadvisor does.
func onlineCPUs(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return runtime.NumCPU()
	}
	n := 0
	for _, r := range strings.Split(strings.TrimSpace(string(b)), ",") {
		lo, hi, ok := strings.Cut(r, "-")
		a, _ := strconv.Atoi(lo)
		z := a
		if ok {
			z, _ = strconv.Atoi(hi)
		}
		n += z - a + 1
	}
	return n
}

// memTotalKi is /proc/meminfo's MemTotal.
func memTotalKi(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	t.Fatal("no MemTotal in /proc/meminfo")
	return 0
}

func firstLine(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// testWriter logs each write to t.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
