package cri

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/stage0"
)

// TestImageVolume: an image mounted read-only in a container, whole or
// a sub-path of it, reported with its digest; a writable one and a
// missing sub-path are refused; removal leaves nothing of it.
func TestImageVolume(t *testing.T) {
	e, pulled, ref := newPulledEnv(t, "")
	ctx := ctxT(t)
	logDir := t.TempDir()
	sbc := sandboxConfig("iv", logDir)
	sb, err := e.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sbc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.rs.StopPodSandbox(ctxT(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.PodSandboxId})
		e.rs.RemovePodSandbox(ctxT(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.PodSandboxId})
	})
	img := &runtimeapi.ImageSpec{Image: pulled.ImageRef, UserSpecifiedImage: ref}
	create := func(script string, mounts ...*runtimeapi.Mount) (string, error) {
		r, err := e.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: sb.PodSandboxId, SandboxConfig: sbc, Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "iv"}, Image: img, LogPath: "iv.log",
			Command: []string{"/bin/sh", "-c", script}, Mounts: mounts,
		}})
		return r.GetContainerId(), err
	}
	if _, err := create("true", &runtimeapi.Mount{ContainerPath: "/iv", Image: img}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a writable image volume: %v, want InvalidArgument", err)
	}
	if _, err := create("true", &runtimeapi.Mount{ContainerPath: "/iv", Image: img, Readonly: true, ImageSubPath: "not-there"}); err == nil {
		t.Errorf("an image volume of a missing sub-path was accepted")
	}
	id, err := create(`ls /iv/bin/sh && ! touch /iv/x 2>/dev/null && /iv/bin/ls /iv >/dev/null && ls /sub/passwd && echo ALL-GOOD; exec sleep 1000`,
		&runtimeapi.Mount{ContainerPath: "/iv", Image: img, Readonly: true},
		&runtimeapi.Mount{ContainerPath: "/sub", Image: img, Readonly: true, ImageSubPath: "etc"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	log := waitFile(t, filepath.Join(logDir, "iv.log"), "ALL-GOOD")
	if strings.Contains(log, "No such file") {
		t.Errorf("log:\n%s", log)
	}
	st, err := e.rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.Status.Mounts {
		if m.GetImage().GetImageRef() != pulled.ImageRef || m.GetImage().GetImage() != pulled.ImageRef {
			t.Errorf("mount %s reports image %v, want %s", m.ContainerPath, m.GetImage(), pulled.ImageRef)
		}
	}
	if len(st.Status.Mounts) != 2 || st.Status.Mounts[1].ImageSubPath != "etc" {
		t.Errorf("mounts %v", st.Status.Mounts)
	}
	dir, err := e.rt.PodDir(sb.PodSandboxId)
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, stage0.VolumesDir)); len(ents) != 2 {
		t.Errorf("%d image volumes in the pod, want 2 (the refused ones left nothing)", len(ents))
	}
	if _, err := e.rs.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, stage0.VolumesDir)); len(ents) != 0 {
		t.Errorf("image volumes left after RemoveContainer: %v", ents)
	}
	noVolumes := func(when string) {
		t.Helper()
		leases, _ := e.rt.Images().Leases()
		for _, l := range leases {
			if strings.Contains(l.ID, "-vol-") {
				t.Errorf("lease %s left %s", l.ID, when)
			}
		}
		if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), filepath.Join(dir, stage0.VolumesDir)) {
			t.Errorf("image volume mounts left %s", when)
		}
	}
	noVolumes("after RemoveContainer")
	// A container with an image volume goes with its sandbox.
	if _, err := create("exec sleep 1000", &runtimeapi.Mount{ContainerPath: "/iv", Image: img, Readonly: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	noVolumes("after RemovePodSandbox")
}
