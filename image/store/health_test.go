package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/image/fetch"
	"github.com/karman-project/karman/image/store"
	"github.com/karman-project/karman/tests/testimage"
)

// truncate cuts the file at p to half its size.
func truncate(t *testing.T, p string) {
	t.Helper()
	info, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, info.Size()/2); err != nil {
		t.Fatal(err)
	}
}

// flipByte inverts one byte in the middle of the file at p.
func flipByte(t *testing.T, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// fixture is a store and the OCI layouts its images come from.
type fixture struct {
	st   *store.Store
	refs map[string]image.Reference
}

func newFixture(t *testing.T) *fixture {
	return &fixture{st: openStore(t), refs: map[string]image.Reference{}}
}

// fetch stores img under tag from an OCI layout written the first time:
// fetching a tag again fetches the same reference.
func (f *fixture) fetch(t *testing.T, tag string, img v1.Image) image.Image {
	t.Helper()
	ref, ok := f.refs[tag]
	if !ok {
		dir := filepath.Join(t.TempDir(), "layout")
		if _, err := testimage.WriteLayout(dir, tag, img); err != nil {
			t.Fatal(err)
		}
		var err error
		if ref, err = image.ParseReference("oci:" + dir + ":" + tag); err != nil {
			t.Fatal(err)
		}
		f.refs[tag] = ref
	}
	got, err := fetch.Fetch(context.Background(), ref, fetch.Options{Store: f.st})
	if err != nil {
		t.Fatalf("fetch %s: %v", ref, err)
	}
	return got
}

func byName(t *testing.T, imgs []image.Image, name string) image.Image {
	t.Helper()
	for _, img := range imgs {
		if slices.Contains(img.Names, name) {
			return img
		}
	}
	t.Fatalf("image %s not listed in %+v", name, imgs)
	return image.Image{}
}

// TestBrokenManifest: a truncated manifest does not break listing or gc
// of the other images; gc keeps what the broken image might use; rm and
// a re-fetch repair it.
func TestBrokenManifest(t *testing.T) {
	f := newFixture(t)
	multiImg := testimage.Must(t)(testimage.MultiLayer(testimage.Options{}))
	multi := f.fetch(t, "multi", multiImg)
	busy := f.fetch(t, "busy", testimage.Must(t)(testimage.Busybox(testimage.Options{})))
	md := mustHash(t, multi.Digest)
	truncate(t, f.st.BlobPath(md))

	imgs, err := f.st.Images()
	if err != nil {
		t.Fatalf("Images with one broken image: %v", err)
	}
	if len(imgs) != 2 {
		t.Fatalf("Images = %+v, want both", imgs)
	}
	if got := byName(t, imgs, busy.Names[0]); got.Status != image.StatusOK || len(got.Layers) != 1 {
		t.Errorf("healthy image listed as %+v", got)
	}
	got := byName(t, imgs, multi.Names[0])
	if got.Status != image.StatusBroken || !strings.Contains(got.Problem, "manifest blob "+multi.Digest+" is corrupt") {
		t.Errorf("broken image listed as %+v", got)
	}
	wantFix := "karman image rm " + multi.Names[0] + " && karman fetch " + multi.Names[0]
	if got.Fix != wantFix {
		t.Errorf("fix = %q, want %q", got.Fix, wantFix)
	}

	_, _, err = f.st.Load(md)
	var be *store.BrokenError
	if !errors.As(err, &be) || !errors.Is(err, image.ErrBroken) || !errors.Is(err, image.ErrDigestMismatch) || be.Role != "manifest" {
		t.Errorf("Load of the broken image: %v", err)
	}
	if err != nil && (!strings.Contains(err.Error(), multi.Names[0]) || !strings.Contains(err.Error(), wantFix)) {
		t.Errorf("error does not name the image and the fix: %v", err)
	}

	// gc cannot know what the broken manifest uses: it keeps every blob
	// and layer, and says so.
	blobs, layers := count(t, f.st, "blobs/sha256"), count(t, f.st, "layers/sha256")
	res, err := f.st.GC(context.Background())
	if err != nil {
		t.Fatalf("gc with a broken image: %v", err)
	}
	if res.Blobs != 0 || res.Layers != 0 || len(res.Unknown) != 1 || !strings.Contains(res.Unknown[0], wantFix) {
		t.Errorf("gc = %+v, want nothing removed and the broken image reported", res)
	}
	if count(t, f.st, "blobs/sha256") != blobs || count(t, f.st, "layers/sha256") != layers {
		t.Errorf("gc removed blobs or layers although an image's manifest is unreadable")
	}

	// rm, gc, fetch: the broken image's own blobs go, busy's stay.
	if _, _, err := f.st.Untag(context.Background(), multi.Names[0]); err != nil {
		t.Fatalf("rm of a broken image: %v", err)
	}
	res, err = f.st.GC(context.Background())
	if err != nil || len(res.Unknown) != 0 || res.Layers != 2 || res.Blobs != 4 {
		t.Errorf("gc after rm = %+v, %v; want multi's 2 layers and 4 blobs", res, err)
	}
	if _, err := f.st.Image(mustHash(t, busy.Digest)); err != nil {
		t.Errorf("healthy image after gc: %v", err)
	}
	f.fetch(t, "multi", multiImg)
	if _, err := f.st.Image(md); err != nil {
		t.Errorf("after rm and fetch: %v", err)
	}
}

// TestRefetchRepairs: fetching a broken image again repairs it, without
// an rm first: a corrupt manifest or config is replaced after the
// download is checked against the digest; a damaged layer blob whose
// layer is not extracted is downloaded again; a layer blob missing
// beside its extracted layer is fetched again.
func TestRefetchRepairs(t *testing.T) {
	img := testimage.Must(t)(testimage.MultiLayer(testimage.Options{}))
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, st *store.Store, m image.Image)
		role   string
	}{
		{"manifest", func(t *testing.T, st *store.Store, m image.Image) { truncate(t, st.BlobPath(mustHash(t, m.Digest))) }, "manifest"},
		{"config", func(t *testing.T, st *store.Store, m image.Image) { truncate(t, st.BlobPath(mustHash(t, m.Config))) }, "config"},
		{"layer blob and extracted layer", func(t *testing.T, st *store.Store, m image.Image) {
			d := mustHash(t, m.Layers[1].Digest)
			flipByte(t, st.BlobPath(d))
			os.RemoveAll(st.LayerPath(d))
		}, "layer"},
		{"layer blob", func(t *testing.T, st *store.Store, m image.Image) {
			os.Remove(st.BlobPath(mustHash(t, m.Layers[2].Digest)))
		}, "layer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			m := f.fetch(t, "v1", img)
			tc.damage(t, f.st, m)
			_, _, err := f.st.Load(mustHash(t, m.Digest))
			var be *store.BrokenError
			if !errors.As(err, &be) || be.Role != tc.role {
				t.Fatalf("Load after damage: %v, want a broken %s", err, tc.role)
			}
			again := f.fetch(t, "v1", img)
			if _, _, err := f.st.Load(mustHash(t, m.Digest)); err != nil || !slices.Equal(again.Names, m.Names) {
				t.Errorf("after a re-fetch: %v, names %v", err, again.Names)
			}
			res, err := f.st.Check(context.Background(), store.CheckOptions{})
			if err != nil || len(res.Bad) != 0 || len(res.Broken) != 0 {
				t.Errorf("check after a re-fetch = %+v, %v", res, err)
			}
			if n := count(t, f.st, "tmp"); n != 0 {
				t.Errorf("%d leftovers in tmp/", n)
			}
		})
	}
}

// TestBrokenConfigGC: with a corrupt config the manifest still says what
// the image uses; gc collects other garbage and keeps all of it.
func TestBrokenConfigGC(t *testing.T) {
	f := newFixture(t)
	busy := f.fetch(t, "busy", testimage.Must(t)(testimage.Busybox(testimage.Options{})))
	multi := f.fetch(t, "multi", testimage.Must(t)(testimage.MultiLayer(testimage.Options{})))
	truncate(t, f.st.BlobPath(mustHash(t, busy.Config)))
	imgs, err := f.st.Images()
	if err != nil {
		t.Fatal(err)
	}
	got := byName(t, imgs, busy.Names[0])
	if got.Status != image.StatusBroken || !strings.Contains(got.Problem, "config blob "+busy.Config+" is corrupt") || len(got.Layers) != 1 {
		t.Errorf("image with a corrupt config listed as %+v", got)
	}
	if _, _, err := f.st.Untag(context.Background(), multi.Names[0]); err != nil {
		t.Fatal(err)
	}
	res, err := f.st.GC(context.Background())
	if err != nil || res.Layers != 2 || res.Blobs != 4 || len(res.Unknown) != 0 {
		t.Errorf("gc = %+v, %v; want multi's 2 layers and 4 blobs", res, err)
	}
	for _, d := range []string{busy.Digest, busy.Config, busy.Layers[0].Digest} {
		if !f.st.HasBlob(mustHash(t, d)) {
			t.Errorf("gc removed blob %s of the broken image", d)
		}
	}
	if !f.st.HasLayer(mustHash(t, busy.Layers[0].Digest)) {
		t.Errorf("gc removed the broken image's layer")
	}
}

// TestCheckFindsDamagedLayerBlob: a flipped byte in a compressed layer
// blob is found by Check only; Remove deletes the blob and the layer
// extracted from it, and a re-fetch repairs the image.
func TestCheckFindsDamagedLayerBlob(t *testing.T) {
	f := newFixture(t)
	img := testimage.Must(t)(testimage.MultiLayer(testimage.Options{}))
	m := f.fetch(t, "multi", img)
	d := mustHash(t, m.Layers[2].Digest)
	flipByte(t, f.st.BlobPath(d))
	// Junk in blobs/ is reported too.
	junk := filepath.Join(f.st.Root(), "blobs", "sha256", "junk")
	os.WriteFile(junk, []byte("x"), 0o600)

	res, err := f.st.Check(context.Background(), store.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Blobs != 6 || len(res.Bad) != 2 || res.Kept() != 2 {
		t.Fatalf("check = %+v, want 6 blobs hashed, 2 bad", res)
	}
	bad := res.Bad[0]
	if bad.Digest != d.String() || !strings.HasPrefix(bad.Problem, "its ") || !slices.Equal(bad.Uses, []string{"layer of " + m.Names[0]}) || bad.Removed {
		t.Errorf("bad layer blob reported as %+v", bad)
	}
	if res.Bad[1].Problem != "name is not a sha256 digest" {
		t.Errorf("junk reported as %+v", res.Bad[1])
	}
	if !f.st.HasBlob(d) || !f.st.HasLayer(d) {
		t.Errorf("check without Remove removed something")
	}

	res, err = f.st.Check(context.Background(), store.CheckOptions{Remove: true})
	if err != nil || res.Kept() != 0 || !res.Bad[0].Removed || res.Bad[0].Layer != "removed" {
		t.Fatalf("check --remove = %+v, %v", res, err)
	}
	if f.st.HasBlob(d) || f.st.HasLayer(d) {
		t.Errorf("the damaged blob or its layer is still there")
	}
	if _, err := os.Lstat(junk); err == nil {
		t.Errorf("junk still there")
	}
	if len(res.Broken) != 1 || !strings.Contains(res.Broken[0].Problem, "layer blob "+d.String()+" is missing") {
		t.Errorf("broken after removal = %+v", res.Broken)
	}
	f.fetch(t, "multi", img)
	res, err = f.st.Check(context.Background(), store.CheckOptions{})
	if err != nil || len(res.Bad)+len(res.Broken) != 0 {
		t.Errorf("check after the re-fetch = %+v, %v", res, err)
	}
}

// TestCheckKeepsLayersOfRunningPods: a damaged blob whose extracted
// layer a live lease uses is kept with its layer, and reported.
func TestCheckKeepsLayersOfRunningPods(t *testing.T) {
	f := newFixture(t)
	m := f.fetch(t, "busy", testimage.Must(t)(testimage.Busybox(testimage.Options{})))
	if err := f.st.AddLease("pod1", mustHash(t, m.Digest), t.TempDir()); err != nil {
		t.Fatal(err)
	}
	d := mustHash(t, m.Layers[0].Digest)
	flipByte(t, f.st.BlobPath(d))
	res, err := f.st.Check(context.Background(), store.CheckOptions{Remove: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Kept() != 1 || res.Bad[0].Kept == "" || !strings.HasPrefix(res.Bad[0].Layer, "kept") {
		t.Errorf("check --remove = %+v, want the leased layer kept", res)
	}
	if !slices.Contains(res.Bad[0].Uses, "layer of pod lease pod1") {
		t.Errorf("uses = %v, want the lease", res.Bad[0].Uses)
	}
	if !f.st.HasBlob(d) || !f.st.HasLayer(d) {
		t.Errorf("a layer a pod uses was removed")
	}
}

// TestGCWithDamagedLease: a lease file that cannot be parsed may hold
// any image: gc keeps every blob and layer and says which file to look
// at, instead of failing.
func TestGCWithDamagedLease(t *testing.T) {
	f := newFixture(t)
	m := f.fetch(t, "busy", testimage.Must(t)(testimage.Busybox(testimage.Options{})))
	if _, _, err := f.st.Untag(context.Background(), m.Names[0]); err != nil {
		t.Fatal(err)
	}
	lease := filepath.Join(f.st.Root(), "leases", "pod1.json")
	if err := os.WriteFile(lease, []byte(`{"id": "pod1", "dig`), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := f.st.GC(context.Background())
	if err != nil {
		t.Fatalf("gc with a damaged lease: %v", err)
	}
	if res.Blobs+res.Layers != 0 || len(res.Unknown) != 1 || !strings.Contains(res.Unknown[0], lease) {
		t.Errorf("gc = %+v, want nothing removed and the lease named", res)
	}
	os.Remove(lease)
	if res, err := f.st.GC(context.Background()); err != nil || res.Blobs != 3 || res.Layers != 1 {
		t.Errorf("gc without the lease = %+v, %v", res, err)
	}
}

// TestDamagedRefsIndex: a corrupt refs.json stops only what needs names.
// Images by digest still load, gc collects tmp/ but no blob or layer
// (any may be named in the lost index), check still hashes; a fetch
// rebuilds the index and moves the damaged copy aside, and gc holds
// back until that copy is deleted.
func TestDamagedRefsIndex(t *testing.T) {
	f := newFixture(t)
	multiImg := testimage.Must(t)(testimage.MultiLayer(testimage.Options{}))
	busyImg := testimage.Must(t)(testimage.Busybox(testimage.Options{}))
	multi := f.fetch(t, "multi", multiImg)
	busy := f.fetch(t, "busy", busyImg)
	refsPath := filepath.Join(f.st.Root(), "refs.json")
	truncate(t, refsPath)
	damaged, err := os.ReadFile(refsPath)
	if err != nil {
		t.Fatal(err)
	}
	isRefsError := func(what string, err error) {
		t.Helper()
		var re *store.RefsError
		if !errors.As(err, &re) || !errors.Is(err, store.ErrRefsDamaged) || re.Err == nil {
			t.Fatalf("%s with a corrupt refs index: %v, want a *RefsError", what, err)
		}
		if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, refsPath) || !strings.Contains(msg, "karman fetch IMAGE") {
			t.Errorf("%s: error %q is not one line naming %s and the fix", what, msg, refsPath)
		}
	}

	_, err = f.st.Images()
	isRefsError("Images", err)
	isRefsError("RefsDamage", f.st.RefsDamage())
	_, err = f.st.Resolve(busy.Names[0])
	isRefsError("Resolve by name", err)
	_, _, err = f.st.Untag(context.Background(), busy.Names[0])
	isRefsError("Untag", err)
	if d, err := f.st.Resolve(busy.Digest); err != nil || d.String() != busy.Digest {
		t.Errorf("Resolve by full digest = %v, %v", d, err)
	} else if _, err := f.st.Image(d); err != nil {
		t.Errorf("Image by digest: %v", err)
	}
	if b, _ := os.ReadFile(refsPath); string(b) != string(damaged) {
		t.Errorf("a failed lookup or rm changed the damaged refs index")
	}

	// gc: tmp/ yes, blobs and layers no.
	if err := os.WriteFile(filepath.Join(f.st.Root(), "tmp", "left"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	blobs, layers := count(t, f.st, "blobs/sha256"), count(t, f.st, "layers/sha256")
	res, err := f.st.GC(context.Background())
	if err != nil {
		t.Fatalf("gc with a corrupt refs index: %v", err)
	}
	if res.Blobs != 0 || res.Layers != 0 || res.Temp != 1 || len(res.Unknown) != 1 || !strings.Contains(res.Unknown[0], refsPath) {
		t.Errorf("gc = %+v, want tmp/ emptied, nothing else removed, the refs index reported", res)
	}
	if count(t, f.st, "blobs/sha256") != blobs || count(t, f.st, "layers/sha256") != layers {
		t.Fatalf("gc removed blobs or layers although image names are unknown")
	}
	if cr, err := f.st.Check(context.Background(), store.CheckOptions{}); err != nil || cr.Blobs != blobs || !strings.Contains(cr.Refs, refsPath) {
		t.Errorf("check with a corrupt refs index = %+v, %v", cr, err)
	}

	// A fetch rebuilds the index with its entry and keeps the damaged copy.
	f.fetch(t, "busy", busyImg)
	imgs, err := f.st.Images()
	if err != nil || len(imgs) != 1 || !slices.Equal(imgs[0].Names, busy.Names) || imgs[0].Status != image.StatusOK {
		t.Fatalf("Images after a re-fetch = %+v, %v; want busy alone", imgs, err)
	}
	aside, _ := filepath.Glob(refsPath + ".damaged-*")
	if len(aside) != 1 {
		t.Fatalf("damaged copies %v, want one", aside)
	} else if b, _ := os.ReadFile(aside[0]); string(b) != string(damaged) {
		t.Errorf("damaged copy %s does not hold the damaged index", aside[0])
	}
	var re *store.RefsError
	if err := f.st.RefsDamage(); !errors.As(err, &re) || re.Aside != aside[0] || !strings.Contains(err.Error(), "delete "+aside[0]) {
		t.Errorf("RefsDamage after the rebuild = %v, want the damaged copy and the fix", err)
	}
	// multi is nameless now but may be named in the damaged copy: kept.
	res, err = f.st.GC(context.Background())
	if err != nil || res.Blobs != 0 || res.Layers != 0 || len(res.Unknown) != 1 || !strings.Contains(res.Unknown[0], aside[0]) {
		t.Errorf("gc with the damaged copy there = %+v, %v; want nothing removed and the copy named", res, err)
	}
	if !f.st.HasBlob(mustHash(t, multi.Digest)) {
		t.Fatalf("gc removed an image the damaged index may name")
	}
	if err := os.Remove(aside[0]); err != nil {
		t.Fatal(err)
	}
	res, err = f.st.GC(context.Background())
	if err != nil || len(res.Unknown) != 0 || res.Layers != 2 || res.Blobs != 4 {
		t.Errorf("gc once the copy is deleted = %+v, %v; want multi's 2 layers and 4 blobs", res, err)
	}
	if _, err := f.st.Image(mustHash(t, busy.Digest)); err != nil || f.st.RefsDamage() != nil {
		t.Errorf("busy after gc: %v (damage %v)", err, f.st.RefsDamage())
	}
}
