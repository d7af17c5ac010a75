package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/isolators/cgroups"
	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/stage1/poddir"
	"github.com/karman-project/karman/tests/testenv"
	"github.com/karman-project/karman/tests/testimage"
	"github.com/karman-project/karman/tests/testregistry"
)

// pushBusybox pushes the busybox test image to an in-process registry on
// loopback and returns its reference.
func pushBusybox(t *testing.T) string {
	t.Helper()
	img := testimage.Must(t)(testimage.Busybox(testimage.Options{}))
	ref := testregistry.InProcess(t) + "/e2e/busybox:1"
	if _, err := testregistry.Push(context.Background(), ref, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

// newPulledEnv is newCRIEnv(t, dir) with the busybox test image pulled
// through PullImage; it returns PullImage's answer and the image's
// reference too.
func newPulledEnv(t *testing.T, dir string) (*criEnv, *runtimeapi.PullImageResponse, string) {
	t.Helper()
	testenv.RequireRoot(t, "pods need namespaces, mounts and cgroups")
	ref := pushBusybox(t)
	e := newCRIEnv(t, dir)
	pulled, err := e.is.PullImage(ctxT(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		t.Fatal(err)
	}
	return e, pulled, ref
}

func sandboxConfig(name, logDir string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "test", Uid: "uid-" + name, Attempt: 1},
		Hostname:     "sb-" + name,
		LogDirectory: logDir,
		Labels:       map[string]string{"app": name},
		Annotations:  map[string]string{"note": "kept"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}},
	}
}

func (e *criEnv) waitContainer(t *testing.T, id string, state runtimeapi.ContainerState) *runtimeapi.ContainerStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := e.rs.ContainerStatus(ctxT(t), &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			t.Fatal(err)
		}
		if st.Status.State == state {
			return st.Status
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s never %s: %v", id, state, st.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitFile(t *testing.T, path, want string) string {
	t.Helper()
	var b []byte
	for range 500 {
		b, _ = os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return string(b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never held %q:\n%s", path, want, b)
	return ""
}

// TestSandboxContainerLifecycle drives a sandbox and its containers
// through the CRI over its socket, restarts the server in the middle
// (a container ends while it is down), and checks that everything is
// reported as before and that nothing is left.
func TestSandboxContainerLifecycle(t *testing.T) {
	dir := t.TempDir()
	e, pulled, ref := newPulledEnv(t, dir)
	ctx := ctxT(t)
	is, err := e.is.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil || is.Image == nil {
		t.Fatalf("ImageStatus %s: %v, %v", ref, is, err)
	}
	if is.Image.Id != pulled.ImageRef || !cmp.Equal(is.Image.RepoTags, []string{ref}) || len(is.Image.RepoDigests) != 1 || is.Image.Size == 0 {
		t.Errorf("ImageStatus %s = %v, pulled %s", ref, is.Image, pulled.ImageRef)
	}

	fsi, err := e.is.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(fsi.ImageFilesystems) != 1 || fsi.ImageFilesystems[0].UsedBytes.GetValue() < is.Image.Size || fsi.ImageFilesystems[0].FsId.GetMountpoint() != e.rt.Images().Root() {
		t.Errorf("ImageFsInfo = %v; want the store's use, at least the image's %d bytes", fsi, is.Image.Size)
	}

	logDir := filepath.Join(t.TempDir(), "pods", "test_one")
	sbc := sandboxConfig("one", logDir)
	sb, err := e.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sbc})
	if err != nil {
		t.Fatal(err)
	}
	sbID := sb.PodSandboxId
	t.Cleanup(func() {
		e.rt.Stop(context.Background(), sbID, true)
		e.rt.Wait(context.Background(), sbID)
		e.rt.Remove(context.Background(), sbID)
	})
	pss, err := e.rs.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sbID})
	if err != nil {
		t.Fatal(err)
	}
	if pss.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY || pss.Status.Metadata.Name != "one" || pss.Status.Annotations["note"] != "kept" {
		t.Errorf("PodSandboxStatus = %v", pss.Status)
	}

	signal := t.TempDir()
	mk := func(name string, cmd ...string) string {
		t.Helper()
		r, err := e.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: sbID, SandboxConfig: sbc, Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name}, Image: &runtimeapi.ImageSpec{Image: pulled.ImageRef},
			Command: cmd, LogPath: name + "/0.log", Labels: map[string]string{"c": name},
			Mounts: []*runtimeapi.Mount{{HostPath: signal, ContainerPath: "/signal"}},
			Envs:   []*runtimeapi.KeyValue{{Key: "GREETING", Value: []byte("hello")}},
			Linux:  &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, OomScoreAdj: -997}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		return r.ContainerId
	}
	ticker := mk("ticker", "/bin/sh", "-c", `echo $GREETING; echo oops >&2; while true; do echo tick; sleep 0.1; done`)
	// ender ends when the test says so, through a volume.
	ender := mk("ender", "/bin/sh", "-c", `while [ ! -e /signal/go ]; do sleep 0.05; done; exit 3`)
	if st := e.waitContainer(t, ticker, runtimeapi.ContainerState_CONTAINER_CREATED); st.LogPath != filepath.Join(logDir, "ticker/0.log") ||
		st.Image.GetImage() != ref || st.ImageRef != pulled.ImageRef || st.ImageId != pulled.ImageRef {
		t.Errorf("created container: log path %q, image %v, ref %s, id %s; want the image's name %s and its id %s", st.LogPath, st.Image, st.ImageRef, st.ImageId, ref, pulled.ImageRef)
	}
	for _, id := range []string{ticker, ender} {
		if _, err := e.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
			t.Fatal(err)
		}
	}
	e.waitContainer(t, ticker, runtimeapi.ContainerState_CONTAINER_RUNNING)
	logFile := filepath.Join(logDir, "ticker/0.log")
	log := waitFile(t, logFile, "stdout F tick")
	if !strings.Contains(log, " stdout F hello\n") || !strings.Contains(log, " stderr F oops\n") {
		t.Errorf("log %s is not the container's output in the CRI format:\n%s", logFile, log)
	}
	stats, err := e.rs.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: ticker})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Stats.Memory.WorkingSetBytes.GetValue() == 0 || stats.Stats.Cpu.UsageCoreNanoSeconds.GetValue() == 0 || stats.Stats.WritableLayer == nil {
		t.Errorf("ContainerStats = %v", stats.Stats)
	}

	// Resources change in place; the asked oom_score_adj is clamped to
	// what this process may set, and the container started all the same.
	if _, err := e.rs.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: ticker,
		Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 128 << 20}}); err != nil {
		t.Fatal(err)
	}
	if got := appCgroupFile(t, e, sbID, ticker, "memory.limit_in_bytes", "memory.max"); got != fmt.Sprint(128<<20) {
		t.Errorf("the memory limit after UpdateContainerResources: %q, want %d", got, 128<<20)
	}
	vs, err := e.rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ticker, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if vs.Status.Resources.GetLinux().GetMemoryLimitInBytes() != 128<<20 {
		t.Errorf("ContainerStatus resources after the update: %v", vs.Status.Resources)
	}
	var info struct{ PID int }
	json.Unmarshal([]byte(vs.Info["info"]), &info)
	own, _ := os.ReadFile("/proc/self/oom_score_adj")
	adj, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", info.PID))
	if want := max(-997, atoi(string(own))); err != nil || atoi(string(adj)) != want {
		t.Errorf("the container's oom_score_adj: %q (%v), want %d", adj, err, want)
	}
	pst, err := e.rs.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: sbID})
	if err != nil {
		t.Fatal(err)
	}
	if len(pst.Stats.Linux.Containers) != 2 || pst.Stats.Linux.Memory.WorkingSetBytes.GetValue() == 0 || pst.Stats.Attributes.Id != sbID {
		t.Errorf("PodSandboxStats = %v", pst.Stats)
	}
	for sel, n := range map[string]int{"one": 1, "other": 0} {
		l, err := e.rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
			LabelSelector: map[string]string{"app": sel}, State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}})
		if err != nil || len(l.Items) != n {
			t.Errorf("ListPodSandbox app=%s ready: %v, %v; want %d", sel, l, err, n)
		}
	}

	// Every metric described is reported for the running container
	// (or its sandbox), with a value per label key.
	descs, err := e.rs.ListMetricDescriptors(ctx, &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pms, err := e.rs.ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string][]string{}
	for _, pm := range pms.PodMetrics {
		if pm.PodSandboxId != sbID {
			continue
		}
		for _, m := range pm.Metrics {
			seen[m.Name] = m.LabelValues
		}
		for _, cm := range pm.ContainerMetrics {
			if cm.ContainerId == ticker {
				for _, m := range cm.Metrics {
					seen[m.Name] = m.LabelValues
				}
			}
		}
	}
	for _, d := range descs.Descriptors {
		v, ok := seen[d.Name]
		switch {
		case !ok && (strings.Contains(d.Name, "blkio") || strings.Contains(d.Name, "_fs_reads") || strings.Contains(d.Name, "_fs_writes")):
			// no block I/O accounting for this file system
		case !ok && strings.Contains(d.Name, "network"):
			// the host's network: no interface of the pod's own
		case !ok:
			t.Errorf("metric %s is described but not reported", d.Name)
		case len(v) != len(d.LabelKeys) || len(d.LabelKeys) == 0 || d.Help == "":
			t.Errorf("metric %s: values %v for label keys %v", d.Name, v, d.LabelKeys)
		}
	}
	if v := seen["container_spec_memory_limit_bytes"]; len(v) < 2 || v[1] != ticker {
		t.Errorf("container_spec_memory_limit_bytes labels %v", v)
	}

	// Rotation: the log renamed away, reopened, goes on in a new file.
	if err := os.Rename(logFile, logFile+".1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rs.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: ticker}); err != nil {
		t.Fatal(err)
	}
	waitFile(t, logFile, "stdout F tick")

	list := func() ([]*runtimeapi.PodSandbox, map[string]*runtimeapi.ContainerStatus) {
		t.Helper()
		sbs, err := e.rs.ListPodSandbox(ctxT(t), &runtimeapi.ListPodSandboxRequest{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*runtimeapi.ContainerStatus{}
		for _, id := range []string{ticker, ender} {
			st, err := e.rs.ContainerStatus(ctxT(t), &runtimeapi.ContainerStatusRequest{ContainerId: id})
			if err != nil {
				t.Fatal(err)
			}
			st.Status.FinishedAt = 0 // may change as ender ends
			out[id] = st.Status
		}
		return sbs.Items, out
	}
	sbsBefore, before := list()
	// The server goes away; ender ends meanwhile.
	e.stop()
	if err := os.WriteFile(filepath.Join(signal, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		apps, _ := e.rt.ListApps(context.Background(), sbID)
		if slices.ContainsFunc(apps, func(a stage0.AppInfo) bool { return a.Name == "ender-"+ender[:12] && a.State == stage0.AppExited }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ender did not end while the server was down: %v", apps)
		}
	}
	e = newCRIEnv(t, dir)
	ctx = ctxT(t)
	ended := e.waitContainer(t, ender, runtimeapi.ContainerState_CONTAINER_EXITED)
	if ended.ExitCode != 3 || ended.Reason != "Error" || ended.FinishedAt == 0 {
		t.Errorf("ender after the restart: exit %d, reason %q, finished %d", ended.ExitCode, ended.Reason, ended.FinishedAt)
	}
	sbsAfter, after := list()
	before[ender].State, before[ender].ExitCode, before[ender].Reason, before[ender].Message = after[ender].State, after[ender].ExitCode, after[ender].Reason, after[ender].Message
	if diff := cmp.Diff(before, after, protocmp.Transform()); diff != "" {
		t.Errorf("containers after a restart (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(sbsBefore, sbsAfter, protocmp.Transform()); diff != "" {
		t.Errorf("sandboxes after a restart (-before +after):\n%s", diff)
	}

	// The streaming lists say what the lists say.
	ss, err := e.rs.StreamPodSandboxes(ctx, &runtimeapi.StreamPodSandboxesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var streamed []*runtimeapi.PodSandbox
	for {
		r, err := ss.Recv()
		if err != nil {
			break
		}
		streamed = append(streamed, r.PodSandboxes...)
	}
	if diff := cmp.Diff(sbsAfter, streamed, protocmp.Transform()); diff != "" {
		t.Errorf("StreamPodSandboxes (-ListPodSandbox +stream):\n%s", diff)
	}
	sc, err := e.rs.StreamContainers(ctx, &runtimeapi.StreamContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		r, err := sc.Recv()
		if err != nil {
			break
		}
		n += len(r.Containers)
	}
	if n != 2 {
		t.Errorf("StreamContainers sent %d containers, want 2", n)
	}

	cl, err := e.rs.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}, LabelSelector: map[string]string{"c": "ticker"}}})
	if err != nil || len(cl.Containers) != 1 || cl.Containers[0].Id != ticker {
		t.Errorf("ListContainers running c=ticker: %v, %v", cl, err)
	}

	// Stop, remove, and the idempotence rules.
	if _, err := e.rs.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ticker, Timeout: 1}); err != nil {
		t.Fatal(err)
	}
	if st := e.waitContainer(t, ticker, runtimeapi.ContainerState_CONTAINER_EXITED); st.FinishedAt < st.StartedAt || st.StartedAt == 0 {
		t.Errorf("stopped ticker: %v", st)
	}
	for range 2 {
		if _, err := e.rs.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ticker}); err != nil {
			t.Errorf("StopContainer of a stopped container: %v", err)
		}
		if _, err := e.rs.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ticker}); err != nil {
			t.Errorf("RemoveContainer: %v", err)
		}
	}
	if _, err := e.rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ticker}); status.Code(err) != codes.NotFound {
		t.Errorf("ContainerStatus of a removed container: %v, want NotFound", err)
	}
	victim := mk("victim", "/bin/sleep", "1000")
	if _, err := e.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: victim}); err != nil {
		t.Fatal(err)
	}
	e.waitContainer(t, victim, runtimeapi.ContainerState_CONTAINER_RUNNING)
	for range 2 {
		if _, err := e.rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sbID}); err != nil {
			t.Errorf("StopPodSandbox: %v", err)
		}
	}
	// A container killed with its sandbox ended when the sandbox did,
	// the same on every call.
	v1 := e.waitContainer(t, victim, runtimeapi.ContainerState_CONTAINER_EXITED)
	v2 := e.waitContainer(t, victim, runtimeapi.ContainerState_CONTAINER_EXITED)
	if v1.FinishedAt <= v1.StartedAt || v1.FinishedAt != v2.FinishedAt || v1.ExitCode == 0 {
		t.Errorf("a container killed with its sandbox: started %d, finished %d then %d, exit %d", v1.StartedAt, v1.FinishedAt, v2.FinishedAt, v1.ExitCode)
	}
	if pss, err := e.rs.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sbID}); err != nil || pss.Status.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("a stopped sandbox: %v, %v", pss, err)
	}
	for range 2 {
		if _, err := e.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sbID}); err != nil {
			t.Errorf("RemovePodSandbox: %v", err)
		}
	}
	if _, err := e.rs.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sbID}); status.Code(err) != codes.NotFound {
		t.Errorf("PodSandboxStatus of a removed sandbox: %v, want NotFound", err)
	}
	pods, _ := e.rt.List(ctx)
	if len(pods) != 0 {
		t.Errorf("pods left: %v", pods)
	}
	for _, d := range []string{"sandboxes", "containers"} {
		if ents, _ := os.ReadDir(filepath.Join(e.stateDir, d)); len(ents) != 0 {
			t.Errorf("records left in %s: %v", d, ents)
		}
	}
	if _, err := e.is.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		t.Fatal(err)
	}
	if is, err := e.is.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil || is.Image != nil {
		t.Errorf("ImageStatus of a removed image: %v, %v", is, err)
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(strings.TrimSpace(s))
	return n
}

// appCgroupFile reads a file of a container's app cgroup: v1 (the
// memory hierarchy) or v2.
func appCgroupFile(t *testing.T, e *criEnv, sbID, id, v1, v2 string) string {
	t.Helper()
	dir, err := e.rt.PodDir(sbID)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, poddir.CgroupFile))
	if err != nil {
		t.Fatal(err)
	}
	_, app, err := e.srv.container(id)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join("/sys/fs/cgroup/memory", strings.TrimSpace(string(b)), app, v1)
	if cgroups.Mode() == "v2" {
		p = filepath.Join("/sys/fs/cgroup", strings.TrimSpace(string(b)), app, v2)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(got))
}
