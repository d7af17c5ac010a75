package cri

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestCgroupParent: a sandbox's cgroup_parent is where its pod's cgroup
// is made, its containers' below; removing the sandbox removes them; a
// systemd slice name is refused.
func TestCgroupParent(t *testing.T) {
	e, pulled, _ := newPulledEnv(t, "")
	ctx := ctxT(t)
	var b [4]byte
	rand.Read(b[:])
	parent := "/karman-cri-test-" + hex.EncodeToString(b[:]) + "/burstable/pod1"
	t.Cleanup(func() {
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + parent)
		more, _ := filepath.Glob("/sys/fs/cgroup/unified" + parent)
		for _, d := range append(dirs, more...) {
			for p := d; strings.Contains(p, "karman-cri-test-"); p = filepath.Dir(p) {
				os.Remove(p)
			}
		}
	})
	sbc := sandboxConfig("cg", "")
	sbc.Linux.CgroupParent = "kubepods-burstable.slice"
	if _, err := e.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sbc}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a systemd slice as cgroup_parent: %v, want InvalidArgument", err)
	}
	sbc.Linux.CgroupParent = parent
	sb, err := e.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sbc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.rs.StopPodSandbox(ctxT(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.PodSandboxId})
		e.rs.RemovePodSandbox(ctxT(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.PodSandboxId})
	})
	r, err := e.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: sb.PodSandboxId, SandboxConfig: sbc, Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "cg"}, Image: &runtimeapi.ImageSpec{Image: pulled.ImageRef},
		Command: []string{"/bin/sleep", "1000"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: r.ContainerId}); err != nil {
		t.Fatal(err)
	}
	e.waitContainer(t, r.ContainerId, runtimeapi.ContainerState_CONTAINER_RUNNING)
	vs, err := e.rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: r.ContainerId, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct{ PID int }
	json.Unmarshal([]byte(vs.Info["info"]), &info)
	_, app, _ := e.srv.container(r.ContainerId)
	want := parent + "/" + sb.PodSandboxId + "/" + app
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", info.PID))
	if err != nil || !strings.Contains(string(cg), ":"+want+"\n") {
		t.Errorf("the container's cgroups (pid %d, %v):\n%s\nwant %s", info.PID, err, cg, want)
	}
	if _, err := e.rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob("/sys/fs/cgroup/*" + parent + "/" + sb.PodSandboxId); len(left) > 0 {
		t.Errorf("the pod's cgroups are left: %v", left)
	}
}
