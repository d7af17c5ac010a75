package cri

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/stage1/poddir"
)

// TestRecoverReconciles: a restarted server forgets the records whose
// pods are gone and removes the CRI pods and apps it never recorded (an
// agent killed between making and recording them); the rest stays.
func TestRecoverReconciles(t *testing.T) {
	dir := t.TempDir()
	e, pulled, _ := newPulledEnv(t, dir)
	ctx := ctxT(t)
	logDir := t.TempDir()
	keptConfig := sandboxConfig("kept", logDir)
	kept, err := e.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: keptConfig})
	if err != nil {
		t.Fatal(err)
	}
	// A container created, whose log link an agent killed in
	// CreateContainer did not make.
	cr, err := e.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: kept.PodSandboxId, SandboxConfig: keptConfig, Config: &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "late"}, Image: &runtimeapi.ImageSpec{Image: pulled.ImageRef},
		Command: []string{"/bin/sh", "-c", "echo late-hello; exec sleep 1000"}, LogPath: "late.log"}})
	if err != nil {
		t.Fatal(err)
	}
	_, lateApp, _ := e.srv.container(cr.ContainerId)
	keptDir, _ := e.rt.PodDir(kept.PodSandboxId)
	if err := os.Remove(filepath.Join(keptDir, poddir.LogsDir, lateApp+".log")); err != nil {
		t.Fatal(err)
	}
	stop := func(uuid string) {
		e.rt.Stop(context.Background(), uuid, true)
		e.rt.Wait(context.Background(), uuid)
		e.rt.Remove(context.Background(), uuid)
	}
	t.Cleanup(func() { stop(kept.PodSandboxId) })
	// An app of the kept sandbox that no record names.
	if _, err := e.rt.AddApp(ctx, kept.PodSandboxId, stage0.AppSpec{Image: pulled.ImageRef, Name: "stray", Exec: "/bin/true"}, stage0.AddAppOptions{PullPolicy: "never"}); err != nil {
		t.Fatal(err)
	}
	// A sandbox pod that was never recorded.
	spec, err := e.srv.sandboxSpec(sandboxConfig("unrecorded", ""))
	if err != nil {
		t.Fatal(err)
	}
	unrec, _, err := e.rt.Run(ctx, spec, stage0.RunOptions{Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(unrec) })
	if _, err := e.rt.WaitStarted(ctx, unrec); err != nil {
		t.Fatal(err)
	}
	// Another server's sandbox pod (another state directory) is not
	// this one's to remove.
	other := sandboxConfig("other", "")
	spec, err = e.srv.sandboxSpec(other)
	if err != nil {
		t.Fatal(err)
	}
	spec.Labels[LabelState] = "/elsewhere"
	otherPod, _, err := e.rt.Run(ctx, spec, stage0.RunOptions{Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(otherPod) })
	// A sandbox whose record this karman cannot read (a newer one's):
	// left alone, its record kept.
	spec, err = e.srv.sandboxSpec(sandboxConfig("future", ""))
	if err != nil {
		t.Fatal(err)
	}
	future, _, err := e.rt.Run(ctx, spec, stage0.RunOptions{Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(future) })
	futureRec := filepath.Join(e.stateDir, "sandboxes", future+".json")
	if err := os.WriteFile(futureRec, []byte(`{"version": 99, "id": "`+future+`", "newField": true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	// A sandbox whose pod was removed behind the server's back.
	gone, err := e.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sandboxConfig("gone", "")})
	if err != nil {
		t.Fatal(err)
	}
	stop(gone.PodSandboxId)

	e.stop()
	e = newCRIEnv(t, dir)
	ctx = ctxT(t)
	l, err := e.rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Items) != 1 || l.Items[0].Id != kept.PodSandboxId || l.Items[0].State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("sandboxes after the restart: %v; want %s alone, ready", l.Items, kept.PodSandboxId)
	}
	if _, err := os.Stat(filepath.Join(e.stateDir, "sandboxes", gone.PodSandboxId+".json")); err == nil {
		t.Errorf("the record of a sandbox whose pod is gone is kept")
	}
	if st, err := e.rt.State(ctx, unrec); err == nil {
		t.Errorf("the unrecorded sandbox pod is still there (%s)", st)
	}
	if _, err := e.rt.State(ctx, otherPod); err != nil {
		t.Errorf("another server's sandbox pod was removed: %v", err)
	}
	if _, err := e.rt.State(ctx, future); err != nil {
		t.Errorf("the sandbox pod of an unreadable record was removed: %v", err)
	}
	if _, err := os.Stat(futureRec); err != nil {
		t.Errorf("an unreadable record was removed: %v", err)
	}
	apps, err := e.rt.ListApps(ctx, kept.PodSandboxId)
	if err != nil || len(apps) != 1 || apps[0].Name != lateApp {
		t.Errorf("apps of the kept sandbox: %v, %v; want the stray one removed, %s kept", apps, err, lateApp)
	}
	if _, err := e.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatal(err)
	}
	waitFile(t, filepath.Join(logDir, "late.log"), "stdout F late-hello")
}
