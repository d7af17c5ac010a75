package tests

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/tests/testenv"
	"github.com/karman-project/karman/tests/testimage"
)

// BenchmarkAppAddStart is `app add` + `app start` of an app running
// /bin/true in a running pod (started with --no-apps), through the stage0
// library as the agent and a CRI server call it: no CLI process start.
// tests/bench/apps.sh runs it beside the CLI figures and `runc run`.
func BenchmarkAppAddStart(b *testing.B) {
	testenv.RequireRoot(b, "pods need namespaces and mounts")
	dir := b.TempDir()
	layout := filepath.Join(b.TempDir(), "layout")
	if _, err := testimage.WriteLayout(layout, "latest", testimage.Must(b)(testimage.Busybox(testimage.Options{}))); err != nil {
		b.Fatal(err)
	}
	img := "oci:" + layout + ":latest"
	mustSucceed(b, karman(b, dir, "fetch", img))
	uuid := strings.TrimSpace(mustSucceed(b, karman(b, dir, "run", "--net=none", "--no-apps")).Stdout)
	b.Cleanup(func() {
		karman(b, dir, "stop", "--force", uuid)
		karman(b, dir, "status", "--wait=20s", uuid)
		karman(b, dir, "gc", "--grace-period=0")
	})
	rt, err := stage0.New(dir, filepath.Join(dir, "etc"), nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	app := stage0.AppSpec{Image: img, Name: "b", Exec: "/bin/true"}
	opts := stage0.AddAppOptions{PullPolicy: "never"}
	for b.Loop() {
		if _, err := rt.AddApp(ctx, uuid, app, opts); err != nil {
			b.Fatal(err)
		}
		if err := rt.StartApp(ctx, uuid, app.Name); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := rt.RemoveApp(ctx, uuid, app.Name, true); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
