package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/tests/testimage"
	"github.com/karman-project/karman/tests/testregistry"
)

// blobPath is where the store under dir keeps the blob with digest d.
func blobPath(dir, d string) string {
	return filepath.Join(dir, "images/blobs/sha256", strings.TrimPrefix(d, "sha256:"))
}

// halve truncates the file at p to half its size.
func halve(t *testing.T, p string) {
	t.Helper()
	info, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, info.Size()/2); err != nil {
		t.Fatal(err)
	}
}

// listImages runs `image list --format json`, which must succeed.
func listImages(t *testing.T, dir string) (map[string]image.Image, string) {
	t.Helper()
	r := mustSucceed(t, karman(t, dir, "image", "list", "--format", "json"))
	var imgs []image.Image
	if err := json.Unmarshal([]byte(r.Stdout), &imgs); err != nil {
		t.Fatalf("image list --format json: %v\n%s", err, r.Stdout)
	}
	out := map[string]image.Image{}
	for _, img := range imgs {
		for _, n := range img.Names {
			out[n] = img
		}
	}
	return out, r.Stderr
}

// oneLine checks that a failed command exited 254 with one line on
// stderr that says each of want.
func oneLine(t *testing.T, what string, code int, stderr string, want ...string) {
	t.Helper()
	msg := strings.TrimSpace(stderr)
	if code != 254 || strings.Count(msg, "\n") != 0 || !strings.HasPrefix(msg, "karman: ") {
		t.Errorf("%s: exit %d, stderr %q; want 254 and one line", what, code, msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("%s: %q does not say %q", what, msg, w)
		}
	}
}

// TestDamagedBlobs damages the store under two images that share a
// layer: list, inspect, gc, rm, check and fetch behave as documented in
// docs/images.md.
func TestDamagedBlobs(t *testing.T) {
	host := testregistry.Distribution(t)
	refA, refB := host+"/e2e/damage:a", host+"/e2e/damage:b"
	digestA := pushed(t, refA, testimage.Options{}, testimage.MultiLayer)
	pushed(t, refB, testimage.Options{}, testimage.Busybox)
	dir := t.TempDir()
	mustSucceed(t, karman(t, dir, "fetch", refA, refB))
	imgs, _ := listImages(t, dir)
	a, b := imgs[refA], imgs[refB]
	if a.Status != image.StatusOK || b.Status != image.StatusOK || len(a.Layers) != 3 {
		t.Fatalf("fresh images listed as %+v and %+v", a, b)
	}
	blobs, layers := filepath.Join(dir, "images/blobs/sha256"), filepath.Join(dir, "images/layers/sha256")
	fix := "karman image rm " + refA + " && karman fetch " + refA

	// A truncated manifest: the other image is still listed, the broken
	// one is marked, with a warning naming the fix; exit 0.
	halve(t, blobPath(dir, digestA))
	imgs, stderr := listImages(t, dir)
	if got := imgs[refA]; got.Status != image.StatusBroken || !strings.Contains(got.Problem, "manifest blob "+digestA+" is corrupt") || got.Fix != fix {
		t.Errorf("broken image listed as %+v", got)
	}
	if imgs[refB].Status != image.StatusOK || len(imgs[refB].Layers) != 1 {
		t.Errorf("healthy image listed as %+v", imgs[refB])
	}
	if w := strings.TrimSpace(stderr); strings.Count(w, "\n") != 0 || !strings.Contains(w, "image "+refA) || !strings.Contains(w, fix) {
		t.Errorf("image list warning %q: want one line naming %s and %q", w, refA, fix)
	}
	r := mustSucceed(t, karman(t, dir, "image", "list"))
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n")[1:] {
		switch {
		case strings.HasPrefix(line, refA+" "):
			if !strings.Contains(line, "broken: manifest blob "+strings.TrimPrefix(digestA, "sha256:")[:12]+" is corrupt") {
				t.Errorf("table line of the broken image: %q", line)
			}
		case strings.HasPrefix(line, refB+" "):
			if !strings.HasSuffix(line, " ok") {
				t.Errorf("table line of the healthy image: %q", line)
			}
		default:
			t.Errorf("unexpected table line %q", line)
		}
	}
	r = karman(t, dir, "image", "inspect", refA)
	oneLine(t, "inspect of a broken image", r.Code, r.Stderr, refA, "manifest blob "+digestA, fix)

	// gc cannot tell what the broken manifest uses: it removes no blob
	// and no layer, says why, and exits 0.
	nBlobs, nLayers := entries(t, blobs), entries(t, layers)
	r = mustSucceed(t, karman(t, dir, "image", "gc", "--format", "json"))
	var gc struct{ Blobs, Layers int }
	json.Unmarshal([]byte(r.Stdout), &gc)
	if gc.Blobs+gc.Layers != 0 || entries(t, blobs) != nBlobs || entries(t, layers) != nLayers {
		t.Errorf("gc with an unreadable manifest removed something: %s", r.Stdout)
	}
	if !strings.Contains(r.Stderr, "removed no blob or layer") || !strings.Contains(r.Stderr, fix) {
		t.Errorf("gc warning: %q", r.Stderr)
	}

	// rm, gc and fetch repair it; the shared layer was never lost.
	mustSucceed(t, karman(t, dir, "image", "rm", refA))
	r = mustSucceed(t, karman(t, dir, "image", "gc"))
	if !strings.Contains(r.Stdout, "2 layers") || r.Stderr != "" {
		t.Errorf("gc after rm: %s", r)
	}
	if r := mustSucceed(t, karman(t, dir, "fetch", refA)); strings.TrimSpace(r.Stdout) != digestA {
		t.Errorf("re-fetch printed %q", r.Stdout)
	}
	if imgs, stderr := listImages(t, dir); imgs[refA].Status != image.StatusOK || imgs[refB].Status != image.StatusOK || stderr != "" {
		t.Errorf("after rm, gc and fetch: %+v %+v %q", imgs[refA], imgs[refB], stderr)
	}

	// A truncated config: a fetch alone repairs it.
	halve(t, blobPath(dir, b.Config))
	if imgs, _ := listImages(t, dir); !strings.Contains(imgs[refB].Problem, "config blob "+b.Config+" is corrupt") {
		t.Errorf("image with a corrupt config listed as %+v", imgs[refB])
	}
	mustSucceed(t, karman(t, dir, "fetch", refB))
	if imgs, _ := listImages(t, dir); imgs[refB].Status != image.StatusOK {
		t.Errorf("after a re-fetch: %+v", imgs[refB])
	}

	// A flipped byte in a compressed layer blob: only image check sees it.
	top := a.Layers[2].Digest
	data, err := os.ReadFile(blobPath(dir, top))
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	os.WriteFile(blobPath(dir, top), data, 0o600)
	if imgs, _ := listImages(t, dir); imgs[refA].Status != image.StatusOK {
		t.Errorf("list hashes layer blobs? %+v", imgs[refA])
	}
	r = karman(t, dir, "image", "check")
	oneLine(t, "image check of a damaged layer blob", r.Code, r.Stderr, "1 damaged blobs", "karman image check --remove")
	short := strings.TrimPrefix(top, "sha256:")[:12]
	if !strings.Contains(r.Stdout, short) || !strings.Contains(r.Stdout, "layer of "+refA) {
		t.Errorf("image check output lacks the blob or its image:\n%s", r.Stdout)
	}
	r = karman(t, dir, "image", "check", "--remove")
	if r.Code != 0 || !strings.Contains(r.Stdout, "removed, with its extracted layer") {
		t.Errorf("image check --remove:\n%s", r)
	}
	if !strings.Contains(r.Stderr, "layer blob "+top+" is missing") || !strings.Contains(r.Stderr, fix) {
		t.Errorf("image check --remove does not say how to repair %s: %q", refA, r.Stderr)
	}
	for _, p := range []string{blobPath(dir, top), filepath.Join(layers, strings.TrimPrefix(top, "sha256:"))} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s left by image check --remove", p)
		}
	}
	mustSucceed(t, karman(t, dir, "fetch", refA))
	r = mustSucceed(t, karman(t, dir, "image", "check"))
	if !strings.Contains(r.Stdout, ": 0 damaged") || r.Stderr != "" {
		t.Errorf("image check after the re-fetch:\n%s", r)
	}
	if n := entries(t, filepath.Join(dir, "images/tmp")); n != 0 {
		t.Errorf("%d leftovers in tmp/", n)
	}
}

// TestRunBrokenImage: run of an image with a corrupt config fails with
// one line naming the image, the blob and the fix, and leaves no pod;
// the fix works.
func TestRunBrokenImage(t *testing.T) {
	e := newPodEnv(t)
	imgs, _ := listImages(t, e.dir)
	img := imgs[e.image]
	halve(t, blobPath(e.dir, img.Config))
	fix := "karman image rm " + e.image + " && karman fetch " + e.image
	r := e.run(t, e.image, "--exec", "/bin/true")
	oneLine(t, "run of a broken image", r.Code, r.Stderr, e.image, "config blob "+img.Config+" is corrupt", fix)
	for _, sd := range []string{"embryo", "prepared", "run", "exited-garbage", "garbage"} {
		if ents, _ := os.ReadDir(filepath.Join(e.dir, "pods", sd)); len(ents) != 0 {
			t.Errorf("a refused run left pods/%s/%s", sd, ents[0].Name())
		}
	}
	if n := entries(t, filepath.Join(e.dir, "images/leases")); n != 0 {
		t.Errorf("a refused run left %d leases", n)
	}
	mustSucceed(t, karman(t, e.dir, "image", "rm", e.image))
	mustSucceed(t, karman(t, e.dir, "fetch", e.image))
	mustSucceed(t, e.run(t, e.image, "--exec", "/bin/true"))
}

// TestDamagedRefsIndex: a corrupt refs.json stops only what needs image
// names. list fails with one line naming the file and the fix; inspect
// and run by digest work; gc removes no blob or layer and says why; run
// by name fetches again, which rebuilds the index and keeps the damaged
// copy, and gc holds back until that copy is deleted.
func TestDamagedRefsIndex(t *testing.T) {
	e := newPodEnv(t)
	imgs, _ := listImages(t, e.dir)
	digest := imgs[e.image].Digest
	refsPath := filepath.Join(e.dir, "images/refs.json")
	halve(t, refsPath)
	blobs := filepath.Join(e.dir, "images/blobs/sha256")
	nBlobs := entries(t, blobs)

	r := karman(t, e.dir, "image", "list")
	oneLine(t, "image list with a corrupt refs index", r.Code, r.Stderr, refsPath, "karman fetch IMAGE")
	r = karman(t, e.dir, "image", "rm", e.image)
	oneLine(t, "image rm with a corrupt refs index", r.Code, r.Stderr, refsPath, "karman fetch IMAGE")
	mustSucceed(t, karman(t, e.dir, "image", "inspect", digest))
	r = mustSucceed(t, karman(t, e.dir, "image", "gc"))
	if !strings.Contains(r.Stderr, "removed no blob or layer") || !strings.Contains(r.Stderr, refsPath) || entries(t, blobs) != nBlobs {
		t.Errorf("gc with a corrupt refs index: %s", r)
	}
	mustSucceed(t, e.run(t, digest, "--exec", "/bin/true"))

	// run by name fetches again and rebuilds the index.
	mustSucceed(t, e.run(t, e.image, "--exec", "/bin/true"))
	aside, _ := filepath.Glob(refsPath + ".damaged-*")
	if len(aside) != 1 {
		t.Fatalf("damaged copies of refs.json: %v, want one", aside)
	}
	imgs, stderr := listImages(t, e.dir)
	if imgs[e.image].Status != image.StatusOK || !strings.Contains(stderr, aside[0]) {
		t.Errorf("image list after the rebuild: %+v, stderr %q", imgs, stderr)
	}
	r = mustSucceed(t, karman(t, e.dir, "image", "gc"))
	if !strings.Contains(r.Stderr, "removed no blob or layer") || !strings.Contains(r.Stderr, "delete "+aside[0]) {
		t.Errorf("gc with the damaged copy there: %s", r)
	}
	os.Remove(aside[0])
	if r = mustSucceed(t, karman(t, e.dir, "image", "gc")); r.Stderr != "" {
		t.Errorf("gc once the copy is deleted: %s", r)
	}
	if _, stderr := listImages(t, e.dir); stderr != "" {
		t.Errorf("image list once the copy is deleted warns: %q", stderr)
	}
}
