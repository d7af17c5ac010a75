package stage0

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDefaultAppName(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:5000/team/busybox:1.36":   "busybox",
		"reg.example/a/My_App@sha256:abcd":   "my-app",
		"oci:/srv/images/layout:v1":          "layout",
		"docker-archive:/tmp/Some.Image.tar": "some-image",
		"oci:/":                              "app",
	} {
		if got := defaultAppName(in); got != want {
			t.Errorf("defaultAppName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	s := PodSpec{Net: "none,bogus", PullPolicy: "sometimes", Interactive: true, Apps: []AppSpec{
		{Image: "oci:/a", Env: []string{"NOEQUALS"}},
		{Image: "oci:/a", WorkingDir: "relative", Mounts: nil},
	}}
	err := s.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"--net=none,bogus", "--pull-policy=sometimes", "--interactive", "NOEQUALS", "relative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not mention %q", err, want)
		}
	}
	ok := PodSpec{Apps: []AppSpec{{Image: "oci:/a"}, {Image: "oci:/a"}}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if ok.Net != "default" || ok.PullPolicy != "new" || ok.StopTimeout <= 0 || ok.Apps[0].Name == ok.Apps[1].Name {
		t.Errorf("defaults not filled: %+v", ok)
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"PATH=/bin", "A=1", "B=2"}, []string{"A=override", "C=3"})
	want := []string{"PATH=/bin", "B=2", "A=override", "C=3"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mergeEnv (-want +got):\n%s", diff)
	}
	if got := mergeEnv(nil, nil); !slices.ContainsFunc(got, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		t.Errorf("no default PATH: %v", got)
	}
}

func TestResolveUserAcrossLayers(t *testing.T) {
	lower, upper := t.TempDir(), t.TempDir()
	write := func(dir, rel, data string) {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(rel)), 0o755)
		os.WriteFile(filepath.Join(dir, rel), []byte(data), 0o644)
	}
	write(lower, "etc/passwd", "root:x:0:0::/root:/bin/sh\nold:x:5:5::/:/bin/sh\n")
	// The upper layer's passwd replaces the lower one.
	write(upper, "etc/passwd", "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnobody32:x:4294967295:4294967295::/:/bin/sh\n")
	write(upper, "etc/group", "root:x:0:\napp:x:1000:\nstaff:x:50:app,other\naudio:x:63:app\n")
	layers := []string{lower, upper}
	tests := []struct {
		spec      string
		uid, gid  uint32
		gids      []uint32
		wantError string
	}{
		{spec: "", uid: 0, gid: 0},
		{spec: "app", uid: 1000, gid: 1000, gids: []uint32{50, 63}},
		{spec: "app:staff", uid: 1000, gid: 50, gids: []uint32{63}},
		{spec: "1000:7", uid: 1000, gid: 7, gids: []uint32{50, 63}},
		{spec: "4242", uid: 4242, gid: 0},
		{spec: "old", wantError: "no such user"},
		{spec: "app:nogroup", wantError: "no such group"},
		// (uint32)-1 would mean "no change" to setuid: the app would stay root.
		{spec: "4294967295", wantError: "ids are 0 to 4294967294"},
		{spec: "1000:4294967295", wantError: "ids are 0 to 4294967294"},
		{spec: "nobody32", wantError: "ids are 0 to 4294967294"},
	}
	for _, tc := range tests {
		uid, gid, gids, err := resolveUser(layers, "", tc.spec)
		if tc.wantError != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantError) {
				t.Errorf("%q: got %v, want an error saying %q", tc.spec, err, tc.wantError)
			}
			continue
		}
		if err != nil || uid != tc.uid || gid != tc.gid || !slices.Equal(gids, tc.gids) {
			t.Errorf("%q = %d:%d %v, %v; want %d:%d %v", tc.spec, uid, gid, gids, err, tc.uid, tc.gid, tc.gids)
		}
	}
}

func TestFindAbbreviatedUUIDs(t *testing.T) {
	r, err := New(t.TempDir(), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"run/abcd1111-0000", "exited-garbage/abcd2222-0000", "prepared/ef001111-0000"} {
		os.MkdirAll(filepath.Join(r.dir, "pods", p), 0o700)
	}
	if p, err := r.find("ef"); err != nil || p.uuid != "ef001111-0000" || p.stateDir != "prepared" {
		t.Errorf("find(ef) = %+v, %v", p, err)
	}
	if _, err := r.find("abcd"); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("find(abcd): %v, want ErrAmbiguous", err)
	}
	if p, err := r.find("abcd2"); err != nil || p.stateDir != "exited-garbage" {
		t.Errorf("find(abcd2) = %+v, %v", p, err)
	}
	if _, err := r.find("99"); !errors.Is(err, ErrNotFound) {
		t.Errorf("find(99): %v", err)
	}
	if _, err := r.find(""); !errors.Is(err, ErrNotFound) {
		t.Errorf("find(empty): %v", err)
	}
}

func TestValidateLabels(t *testing.T) {
	s := PodSpec{Apps: []AppSpec{{Image: "oci:/a"}}, Labels: map[string]string{"ok": "v", "": "x", "a=b": "y"}}
	err := s.Validate()
	if !errors.Is(err, ErrInvalid) || strings.Count(err.Error(), "label ") != 2 {
		t.Errorf("labels with an empty key and an '=': %v", err)
	}
}

func TestSignalRefusesSignalsTheSupervisorDoesNotForward(t *testing.T) {
	r := &Runtime{dir: t.TempDir()}
	for _, sig := range []syscall.Signal{syscall.SIGALRM, syscall.SIGSTOP, syscall.SIGCHLD} {
		if err := r.Signal(context.Background(), "whatever", sig); !errors.Is(err, ErrInvalid) {
			t.Errorf("Signal(%v) = %v, want ErrInvalid", sig, err)
		}
	}
}

// TestFailedPrepareKeepsNoDescriptor: a pod that cannot be made is
// removed, and its lock is closed too, not left open until the garbage
// collector finalises it (the node agent makes pods for as long as it
// runs).
func TestFailedPrepareKeepsNoDescriptor(t *testing.T) {
	r, err := New(t.TempDir(), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	spec := PodSpec{Net: "none", PullPolicy: "never", Apps: []AppSpec{{Image: "oci:" + t.TempDir() + ":missing"}}}
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	r.Prepare(context.Background(), spec) // whatever a first use opens for good
	before := fds()
	for range 3 {
		if _, err := r.Prepare(context.Background(), spec); err == nil {
			t.Fatal("a pod of a missing image was prepared")
		}
	}
	if after := fds(); after != before {
		t.Errorf("%d descriptors open before, %d after three failed prepares", before, after)
	}
	if ents, _ := os.ReadDir(filepath.Join(r.dir, "pods", "embryo")); len(ents) != 0 {
		t.Errorf("%d pods left in embryo/", len(ents))
	}
}
