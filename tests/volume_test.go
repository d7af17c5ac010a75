package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/karman-project/karman/agentapi"
	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/tests/testimage"
)

// TestAgentVolumeSymlinkEscape: a task that may mount the agent's
// --volume-dir plants symlinks to the host's root in it; a later task that
// asks for a volume through them is refused before any pod is made (422,
// naming the source and why), as is a missing source. A symlink that stays
// inside the volume directory is followed.
func TestAgentVolumeSymlinkEscape(t *testing.T) {
	e := newAgentEnv(t)
	vol := t.TempDir()
	e.start(t, "--volume-dir", vol)
	ctx := ctxT(t, 2*time.Minute)

	plant := e.spec("mkdir /data/d && echo inside >/data/d/f && ln -s / /data/x && ln -s ../../../../../../../.. /data/up && ln -s d /data/in")
	plant.Volumes = []agentapi.Volume{{Source: vol, Target: "/data"}}
	if _, err := e.c.Launch(ctx, "plant", plant); err != nil {
		t.Fatal(err)
	}
	if tk, err := e.c.Wait(ctx, "plant"); err != nil || tk.ExitCode == nil || *tk.ExitCode != 0 {
		t.Fatalf("the planting task: %+v, %v", tk, err)
	}
	if l, err := os.Readlink(filepath.Join(vol, "x")); err != nil || l != "/" {
		t.Fatalf("the first task did not plant its symlink: %q, %v", l, err)
	}

	for i, tc := range []struct{ src, want string }{
		{vol + "/x", "leads out of its allowed directory " + vol},
		{vol + "/x/etc", "leads out"},
		{vol + "/up", "leads out"},
		{vol + "/d/../x/etc", "leads out"},
		{vol + "/missing", "no such file or directory"},
	} {
		id := fmt.Sprintf("escape-%d", i)
		s := e.spec("ls /host")
		s.Volumes = []agentapi.Volume{{Source: tc.src, Target: "/host"}}
		_, err := e.c.Launch(ctx, id, s)
		var ae *agentapi.APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusUnprocessableEntity ||
			!strings.Contains(ae.Body.Error, filepath.Clean(tc.src)) || !strings.Contains(ae.Body.Error, tc.want) {
			t.Errorf("volume %s: %v, want 422 naming it and saying %q", tc.src, err, tc.want)
		}
		if _, err := e.c.Task(ctx, id); agentapi.StatusOf(err) != http.StatusNotFound {
			t.Errorf("task %s after a refused launch: %v, want 404", id, err)
		}
	}

	in := e.spec("cat /v/f")
	in.Volumes = []agentapi.Volume{{Source: vol + "/in", Target: "/v", ReadOnly: true}}
	if _, err := e.c.Launch(ctx, "inside", in); err != nil {
		t.Fatal(err)
	}
	if tk, err := e.c.Wait(ctx, "inside"); err != nil || tk.ExitCode == nil || *tk.ExitCode != 0 {
		t.Errorf("a volume through a symlink inside the volume directory: %+v, %v", tk, err)
	}
	// Only the two admitted tasks made pods.
	var pods []stage0.PodInfo
	if err := json.Unmarshal([]byte(karman(t, e.dir, "list", "--format", "json").Stdout), &pods); err != nil || len(pods) != 2 {
		t.Errorf("%d pods (%v), want the 2 of the admitted tasks", len(pods), err)
	}
}

// TestRunRefusesBadVolumes: a volume may not be mounted on a path the
// runtime mounts itself, and a missing source is refused before a pod is
// made.
func TestRunRefusesBadVolumes(t *testing.T) {
	e := newPodEnv(t)
	host := t.TempDir()
	missing := filepath.Join(host, "missing")
	r := e.run(t, "--volume", missing+":/data", e.image, "--exec", "/bin/true")
	if r.Code != 254 || !strings.Contains(r.Stderr, "volume source "+missing+": no such file or directory") {
		t.Errorf("a missing volume source: want exit 254 naming it:\n%s", r)
	}
	for _, target := range []string{"/", "/proc", "/proc/sys", "/sys", "/dev", "/dev/shm", "/data/../proc"} {
		r := e.run(t, "--volume", host+":"+target, e.image, "--exec", "/bin/true")
		if r.Code != 254 || !strings.Contains(r.Stderr, "volume target "+target+":") || !strings.Contains(r.Stderr, "the runtime mounts that path itself") {
			t.Errorf("--volume %s:%s: want exit 254 naming the target and why:\n%s", host, target, r)
		}
	}
	var pods []stage0.PodInfo
	json.Unmarshal([]byte(karman(t, e.dir, "list", "--format", "json").Stdout), &pods)
	if len(pods) != 0 {
		t.Errorf("refused runs left %d pods", len(pods))
	}
}

// TestVolumeUnderSys: a volume may be mounted below the app's read-only
// /sys on a directory that exists there (as runc and podman allow, see
// docs/security.md), read-write, and a target that does not exist there
// is refused with one line saying why and what to do.
func TestVolumeUnderSys(t *testing.T) {
	e := newPodEnv(t)
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "in"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := mustSucceed(t, e.run(t, "--volume", host+":/sys/fs/cgroup", e.image, "--exec", "/bin/sh", "--", "-c", "cat /sys/fs/cgroup/in && echo from the app > /sys/fs/cgroup/out"))
	if !strings.Contains(r.Stdout, "from the host") {
		t.Errorf("the volume at /sys/fs/cgroup does not show its source:\n%s", r)
	}
	if b, err := os.ReadFile(filepath.Join(host, "out")); err != nil || string(b) != "from the app\n" {
		t.Errorf("the app's write to its volume at /sys/fs/cgroup: %q, %v", b, err)
	}
	r = e.run(t, "--volume", host+":/sys/nowhere", e.image, "--exec", "/bin/true")
	oneLine(t, "a volume target missing in /sys", r.Code, r.Stderr, "volume target /sys/nowhere", "read-only", "mount the volume on a path that exists there")
}

// TestVolumeTargetImageSymlinks: an image's symlinks (absolute, to a path
// that exists on the host; relative, leading out with "..") lead a
// volume's target inside the app's root, never onto the host; one that
// leads to /proc is refused.
func TestVolumeTargetImageSymlinks(t *testing.T) {
	e := newPodEnv(t)
	hostDir := t.TempDir()                                   // what the absolute symlink names
	top := fmt.Sprintf("karman-volume-test-%d", os.Getpid()) // where ".." would lead on the host
	img, err := testimage.WithLinks(testimage.Must(t)(testimage.Busybox(testimage.Options{})), []string{hostDir},
		map[string]string{"/data": hostDir, "/up": "../../../../../../../../..", "/toproc": "/proc"})
	if err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(t.TempDir(), "layout")
	if _, err := testimage.WriteLayout(layout, "links", img); err != nil {
		t.Fatal(err)
	}
	ref := "oci:" + layout + ":links"
	mustSucceed(t, karman(t, e.dir, "fetch", ref))
	vol := t.TempDir()
	if err := os.WriteFile(filepath.Join(vol, "f"), []byte("from-volume\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove("/" + top) })

	r := e.run(t, "--volume", vol+":/data/x", "--volume", vol+":/up/"+top+":ro", ref,
		"--exec", "/bin/sh", "--", "-c", fmt.Sprintf("cat %s/x/f /%s/f", hostDir, top))
	if r.Code != 0 || r.Stdout != "from-volume\nfrom-volume\n" {
		t.Errorf("the volumes are not where the symlinks lead inside the app:\n%s", r)
	}
	if _, err := os.Lstat(filepath.Join(hostDir, "x")); err == nil {
		t.Errorf("a volume target was made on the host, in %s", hostDir)
	}
	if _, err := os.Lstat("/" + top); err == nil {
		t.Errorf("a volume target was made on the host: /%s", top)
	}
	r = e.run(t, "--volume", vol+":/toproc", ref, "--exec", "/bin/true")
	if r.Code != 254 || !strings.Contains(r.Stderr, "volume target /toproc leads to /proc") {
		t.Errorf("a target that leads to /proc: want exit 254 naming it:\n%s", r)
	}
}
