package cri

import (
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestContainerOOMKilled: a container killed by the kernel for going
// over its memory limit is reported as OOMKilled; one that exits 0 as
// Completed.
func TestContainerOOMKilled(t *testing.T) {
	e, pulled, _ := newPulledEnv(t, "")
	ctx := ctxT(t)
	sbc := sandboxConfig("oom", "")
	sb, err := e.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sbc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.rs.StopPodSandbox(ctxT(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.PodSandboxId})
		e.rs.RemovePodSandbox(ctxT(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.PodSandboxId})
	})
	run := func(name string, mem int64, script string) *runtimeapi.ContainerStatus {
		t.Helper()
		r, err := e.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: sb.PodSandboxId, SandboxConfig: sbc, Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name}, Image: &runtimeapi.ImageSpec{Image: pulled.ImageRef},
			Command: []string{"/bin/sh", "-c", script},
			Linux:   &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: mem}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: r.ContainerId}); err != nil {
			t.Fatal(err)
		}
		return e.waitContainer(t, r.ContainerId, runtimeapi.ContainerState_CONTAINER_EXITED)
	}
	// tail keeps the last line, which /dev/zero never ends.
	if st := run("hog", 16<<20, "exec tail /dev/zero"); st.Reason != "OOMKilled" || st.ExitCode != 137 {
		t.Errorf("a container over its memory limit: reason %q, exit %d, message %q; want OOMKilled, 137", st.Reason, st.ExitCode, st.Message)
	}
	if st := run("ok", 0, "exit 0"); st.Reason != "Completed" || st.ExitCode != 0 {
		t.Errorf("a container that exits 0: reason %q, exit %d", st.Reason, st.ExitCode)
	}
}
