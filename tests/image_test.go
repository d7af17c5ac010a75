package tests

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/tests/testenv"
	"github.com/karman-project/karman/tests/testimage"
	"github.com/karman-project/karman/tests/testregistry"
)

// karman runs the binary with --dir dir and --config-dir dir/etc, where
// acceptAnything puts a policy accepting every image: the tests that are
// not about signatures fetch unsigned images (signing_test.go has its own
// configuration directories).
func karman(t testing.TB, dir string, args ...string) testenv.Result {
	t.Helper()
	acceptAnything(t, filepath.Join(dir, "etc"))
	return testenv.Run(t, nil, append([]string{"--dir", dir, "--config-dir", filepath.Join(dir, "etc")}, noNet(args)...)...)
}

// noNet adds --net=none to a run or prepare command line that names no
// network: the default network is for the tests that are about networks
// (net_test.go); the others need none and run faster without.
func noNet(args []string) []string {
	for i, a := range args {
		if a == "run" || a == "prepare" {
			for _, b := range args[i+1:] {
				if b == "--" {
					break // the app's arguments
				}
				if strings.HasPrefix(b, "--net") {
					return args
				}
			}
			return append(append(args[:i+1:i+1], "--net=none"), args[i+1:]...)
		}
		if !strings.HasPrefix(a, "-") && !strings.HasPrefix(args[max(i-1, 0)], "--") {
			return args // another command
		}
	}
	return args
}

// acceptAnything writes configDir/policy.json accepting every image
// unless there is one already.
func acceptAnything(t testing.TB, configDir string) {
	t.Helper()
	p := filepath.Join(configDir, "policy.json")
	if _, err := os.Stat(p); err == nil {
		return
	}
	if err := os.MkdirAll(configDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(`{"version": 1, "default": {"type": "insecure-accept-anything"}}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustSucceed(t testing.TB, r testenv.Result) testenv.Result {
	t.Helper()
	if r.Code != 0 {
		t.Fatalf("karman failed:\n%s", r)
	}
	return r
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			info, _ := d.Info()
			n += info.Size()
		}
		return nil
	})
	return n
}

func entries(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func pushed(t *testing.T, ref string, opts testimage.Options, build func(testimage.Options) (v1Image, error)) string {
	t.Helper()
	img := testimage.Must(t)(build(opts))
	d, err := testregistry.Push(context.Background(), ref, img)
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func TestFetchFromRegistryListInspectRmGC(t *testing.T) {
	host := testregistry.Distribution(t)
	ref := host + "/e2e/busybox:1"
	want := pushed(t, ref, testimage.Options{}, testimage.MultiLayer)
	dir := t.TempDir()

	r := mustSucceed(t, karman(t, dir, "fetch", ref))
	if got := strings.TrimSpace(r.Stdout); got != want {
		t.Fatalf("fetch printed %q, want the digest %s", got, want)
	}
	if r.Stderr != "" {
		t.Errorf("fetch wrote to stderr off a terminal: %q", r.Stderr)
	}

	var imgs []image.Image
	r = mustSucceed(t, karman(t, dir, "image", "list", "--format", "json"))
	if err := json.Unmarshal([]byte(r.Stdout), &imgs); err != nil {
		t.Fatalf("image list --format json: %v\n%s", err, r.Stdout)
	}
	if len(imgs) != 1 || imgs[0].Digest != want || imgs[0].Names[0] != ref || len(imgs[0].Layers) != 3 {
		t.Fatalf("image list = %+v", imgs)
	}
	r = mustSucceed(t, karman(t, dir, "image", "list"))
	if !strings.Contains(r.Stdout, ref) || !strings.Contains(r.Stdout, strings.TrimPrefix(want, "sha256:")[:12]) {
		t.Errorf("image list table lacks the image:\n%s", r.Stdout)
	}
	r = mustSucceed(t, karman(t, dir, "image", "inspect", ref))
	var insp struct {
		Image      image.Image
		ConfigFile struct{ Architecture string }
	}
	if err := json.Unmarshal([]byte(r.Stdout), &insp); err != nil || insp.Image.Digest != want || insp.ConfigFile.Architecture == "" {
		t.Errorf("image inspect: %v\n%s", err, r.Stdout)
	}

	// The layers are ready to run: extracted, with the top layer's motd.
	layers := filepath.Join(dir, "images/layers/sha256")
	if n := entries(t, layers); n != 3 {
		t.Errorf("%d extracted layers, want 3", n)
	}
	full := dirSize(t, filepath.Join(dir, "images"))

	r = mustSucceed(t, karman(t, dir, "image", "rm", ref))
	if !strings.Contains(r.Stdout, "untagged "+ref) {
		t.Errorf("image rm said %q", r.Stdout)
	}
	r = mustSucceed(t, karman(t, dir, "image", "gc"))
	if !strings.Contains(r.Stdout, "3 layers") {
		t.Errorf("image gc said %q", r.Stdout)
	}
	if left := dirSize(t, filepath.Join(dir, "images")); left > full/100 {
		t.Errorf("rm + gc left %d of %d bytes", left, full)
	}
	if n := entries(t, layers) + entries(t, filepath.Join(dir, "images/blobs/sha256")); n != 0 {
		t.Errorf("%d blobs and layers left after rm + gc", n)
	}
	r = mustSucceed(t, karman(t, dir, "image", "list", "--format", "json"))
	if strings.TrimSpace(r.Stdout) != "[]" {
		t.Errorf("image list after rm = %q, want []", r.Stdout)
	}
}

func TestFetchOCILayoutAndArchive(t *testing.T) {
	img := testimage.Must(t)(testimage.MultiLayer(testimage.Options{Compression: testimage.Zstd}))
	layout := filepath.Join(t.TempDir(), "layout")
	want, err := testimage.WriteLayout(layout, "v2", img)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "img.tar")
	if err := testimage.WriteDockerArchive(archive, "127.0.0.1:5000/e2e/archive:v1", img); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r := mustSucceed(t, karman(t, dir, "fetch", "oci:"+layout+":v2", "docker-archive:"+archive))
	lines := strings.Fields(r.Stdout)
	if len(lines) != 2 || lines[0] != want.String() {
		t.Fatalf("fetch printed %q, want %s first", r.Stdout, want)
	}
	r = mustSucceed(t, karman(t, dir, "image", "list", "--format", "json"))
	var imgs []image.Image
	if err := json.Unmarshal([]byte(r.Stdout), &imgs); err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, img := range imgs {
		for _, n := range img.Names {
			names[n] = img.Digest
		}
	}
	if names["oci:"+layout+":v2"] != lines[0] || names["docker-archive:"+archive] != lines[1] {
		t.Errorf("image list names = %v, want the layout and the archive", names)
	}
}

// TestConcurrentFetches: two processes fetching one image at once both
// succeed, and the image is stored once.
func TestConcurrentFetches(t *testing.T) {
	host := testregistry.Distribution(t)
	ref := host + "/e2e/big:1"
	want := pushed(t, ref, testimage.Options{}, func(o testimage.Options) (v1Image, error) { return testimage.Big(o, 24, 60, 3) })
	dir := t.TempDir()
	var wg sync.WaitGroup
	results := make([]testenv.Result, 2)
	for i := range results {
		wg.Go(func() { results[i] = karman(t, dir, "fetch", ref) })
	}
	wg.Wait()
	for i, r := range results {
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != want {
			t.Errorf("fetch %d:\n%s", i, r)
		}
	}
	if n := entries(t, filepath.Join(dir, "images/layers/sha256")); n != 4 {
		t.Errorf("%d extracted layers, want 4 (each stored once)", n)
	}
	if n := entries(t, filepath.Join(dir, "images/tmp")); n != 0 {
		t.Errorf("%d leftovers in tmp/", n)
	}
}

// TestFetchKilledThenFetchAgain kills a fetch with SIGKILL in the middle
// of its download, then fetches again.
func TestFetchKilledThenFetchAgain(t *testing.T) {
	host := testregistry.Distribution(t)
	ref := host + "/e2e/big:kill"
	want := pushed(t, ref, testimage.Options{}, func(o testimage.Options) (v1Image, error) { return testimage.Big(o, 120, 300, 4) })
	dir := t.TempDir()
	for _, after := range []time.Duration{0, 20 * time.Millisecond, 60 * time.Millisecond, 150 * time.Millisecond} {
		acceptAnything(t, filepath.Join(dir, "etc"))
		cmd := exec.Command(testenv.Binary(t), "--dir", dir, "--config-dir", filepath.Join(dir, "etc"), "fetch", ref)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until the download is under way (something in tmp/), then some more.
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if ents, _ := os.ReadDir(filepath.Join(dir, "images/tmp")); len(ents) > 0 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(after)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	r := mustSucceed(t, karman(t, dir, "fetch", ref))
	if strings.TrimSpace(r.Stdout) != want {
		t.Fatalf("fetch after SIGKILL printed %q, want %s", r.Stdout, want)
	}
	if n := entries(t, filepath.Join(dir, "images/layers/sha256")); n != 5 {
		t.Errorf("%d extracted layers, want 5", n)
	}
	// What the killed processes left is garbage that gc removes.
	mustSucceed(t, karman(t, dir, "image", "gc"))
	if n := entries(t, filepath.Join(dir, "images/tmp")); n != 0 {
		t.Errorf("%d leftovers in tmp/ after gc", n)
	}
	r = mustSucceed(t, karman(t, dir, "image", "list", "--format", "json"))
	if !strings.Contains(r.Stdout, want) {
		t.Errorf("image lost by gc: %s", r.Stdout)
	}
}

// TestErrorsAreOneClearLine: runtime errors exit 254 with one line that
// names the problem and the fix, and change nothing.
func TestErrorsAreOneClearLine(t *testing.T) {
	host := testregistry.Distribution(t)
	dir := t.TempDir()
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"fetch", "127.0.0.1:1/nothing/here:v1"}, []string{"cannot reach registry 127.0.0.1:1", "check"}},
		{[]string{"fetch", host + "/no/such:image"}, []string{"not found", "check the repository and tag"}},
		{[]string{"fetch", "busybox"}, []string{"names no registry host", "127.0.0.1:5000/busybox"}},
		{[]string{"fetch", "oci:" + t.TempDir()}, []string{"not an OCI image layout"}},
		{[]string{"fetch", "--insecure-options", "bogus", host + "/x:y"}, []string{"unknown option \"bogus\"", "valid: image, http, tls"}},
		{[]string{"image", "rm", "127.0.0.1:5000/not/stored:v1"}, []string{"not in the store", "karman image list"}},
		{[]string{"image", "list", "--format", "yaml"}, []string{"use table or json"}},
		{[]string{"fetch", "--no-such-flag"}, []string{"unknown flag", "karman fetch --help"}},
	}
	for _, tc := range tests {
		r := karman(t, dir, tc.args...)
		if r.Code != 254 {
			t.Errorf("%v: exit %d, want 254\n%s", tc.args, r.Code, r)
			continue
		}
		msg := strings.TrimSpace(r.Stderr)
		if strings.Count(msg, "\n") != 0 || !strings.HasPrefix(msg, "karman: ") {
			t.Errorf("%v: want one line starting with \"karman: \", got %q", tc.args, msg)
		}
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%v: %q does not say %q", tc.args, msg, w)
			}
		}
	}
	if n := entries(t, filepath.Join(dir, "images/blobs/sha256")) + entries(t, filepath.Join(dir, "images/tmp")); n != 0 {
		t.Errorf("failed commands left %d files in the store", n)
	}
}

// TestFetchDiskFull fetches onto a tiny tmpfs: a clear error, nothing
// half-written, and the store still works.
func TestFetchDiskFull(t *testing.T) {
	testenv.RequireRoot(t, "mounting a small tmpfs to fill")
	host := testregistry.Distribution(t)
	ref := host + "/e2e/big:full"
	pushed(t, ref, testimage.Options{}, func(o testimage.Options) (v1Image, error) { return testimage.Big(o, 16, 40, 2) })
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=6m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	r := karman(t, dir, "fetch", ref)
	if r.Code != 254 || !strings.Contains(r.Stderr, "no space left on device") || !strings.Contains(r.Stderr, "karman image gc") {
		t.Fatalf("fetch onto a full disk:\n%s", r)
	}
	if n := entries(t, filepath.Join(dir, "images/tmp")); n != 0 {
		t.Errorf("%d partial files left in tmp/", n)
	}
	r = mustSucceed(t, karman(t, dir, "image", "list", "--format", "json"))
	if strings.TrimSpace(r.Stdout) != "[]" {
		t.Errorf("a failed fetch left an image: %s", r.Stdout)
	}
	mustSucceed(t, karman(t, dir, "image", "gc"))
}

func TestVersion(t *testing.T) {
	r := mustSucceed(t, testenv.Run(t, nil, "version", "--format", "json"))
	var v struct{ Version, GoVersion string }
	if err := json.Unmarshal([]byte(r.Stdout), &v); err != nil || v.Version == "" || v.GoVersion == "" {
		t.Errorf("version --format json: %v %q", err, r.Stdout)
	}
}

type v1Image = v1.Image
