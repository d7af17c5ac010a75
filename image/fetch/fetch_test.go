package fetch_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/image/fetch"
	"github.com/karman-project/karman/image/layer"
	"github.com/karman-project/karman/image/store"
	"github.com/karman-project/karman/tests/testimage"
	"github.com/karman-project/karman/tests/testregistry"
)

// fakeRegistry is go-containerregistry's registry behind a middleware that
// tests use to count, tamper with or refuse requests.
type fakeRegistry struct {
	host       string
	blobGets   atomic.Int64
	middleware func(w http.ResponseWriter, r *http.Request) bool // true: handled
}

func newFakeRegistry(t *testing.T) *fakeRegistry {
	t.Helper()
	f := &fakeRegistry{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			f.blobGets.Add(1)
		}
		if f.middleware != nil && f.middleware(w, r) {
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.host = strings.TrimPrefix(srv.URL, "http://")
	return f
}

func push(t *testing.T, ref string, img v1.Image) v1.Hash {
	t.Helper()
	d, err := testregistry.Push(context.Background(), ref, img)
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return d
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "images"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func mustRef(t *testing.T, s string) image.Reference {
	t.Helper()
	r, err := image.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// assertNothingCommitted checks that a failed fetch left no image: no
// name, no manifest, no extracted layer, nothing in tmp/.
func assertNothingCommitted(t *testing.T, st *store.Store) {
	t.Helper()
	refs, err := st.Refs()
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 0 {
		t.Errorf("refs after failed fetch: %v", refs)
	}
	for _, dir := range []string{"layers/sha256", "tmp"} {
		ents, _ := os.ReadDir(filepath.Join(st.Root(), dir))
		if len(ents) != 0 {
			t.Errorf("%s after failed fetch: %d entries, want none", dir, len(ents))
		}
	}
}

func TestFetchRegistry(t *testing.T) {
	img := testimage.Must(t)(testimage.Busybox(testimage.Options{}))
	reg := newFakeRegistry(t)
	want := push(t, reg.host+"/test/busybox:v1", img)
	st := openStore(t)

	got, err := fetch.Fetch(context.Background(), mustRef(t, reg.host+"/test/busybox:v1"), fetch.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != want.String() {
		t.Errorf("digest = %s, want %s", got.Digest, want)
	}
	if len(got.Names) != 1 || got.Names[0] != reg.host+"/test/busybox:v1" {
		t.Errorf("names = %v", got.Names)
	}
	ld, _ := v1.NewHash(got.Layers[0].Digest)
	if fi, err := os.Lstat(filepath.Join(st.LayerPath(ld), "bin/busybox")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("extracted layer lacks bin/busybox: %v", err)
	}
	if target, err := os.Readlink(filepath.Join(st.LayerPath(ld), "bin/sh")); err != nil || target != "busybox" {
		t.Errorf("bin/sh -> %q, %v; want busybox", target, err)
	}

	// A second fetch resolves the tag again but downloads no blob.
	before := reg.blobGets.Load()
	if _, err := fetch.Fetch(context.Background(), mustRef(t, reg.host+"/test/busybox:v1"), fetch.Options{Store: st}); err != nil {
		t.Fatal(err)
	}
	if n := reg.blobGets.Load() - before; n != 0 {
		t.Errorf("second fetch downloaded %d blobs, want 0", n)
	}
	// By digest too.
	if _, err := fetch.Fetch(context.Background(), mustRef(t, reg.host+"/test/busybox@"+want.String()), fetch.Options{Store: st}); err != nil {
		t.Fatal(err)
	}
}

func TestFetchCompressions(t *testing.T) {
	reg := newFakeRegistry(t)
	for _, c := range []testimage.Compression{testimage.Gzip, testimage.Zstd, testimage.Uncompressed} {
		t.Run(c.String(), func(t *testing.T) {
			img := testimage.Must(t)(testimage.MultiLayer(testimage.Options{Compression: c}))
			ref := reg.host + "/test/multi:" + c.String()
			want := push(t, ref, img)
			st := openStore(t)
			got, err := fetch.Fetch(context.Background(), mustRef(t, ref), fetch.Options{Store: st})
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest != want.String() || len(got.Layers) != 3 {
				t.Fatalf("got %s with %d layers, want %s with 3", got.Digest, len(got.Layers), want)
			}
			top, _ := v1.NewHash(got.Layers[2].Digest)
			if b, err := os.ReadFile(filepath.Join(st.LayerPath(top), "etc/motd")); err != nil || string(b) != "layer3\n" {
				t.Errorf("top layer etc/motd = %q, %v", b, err)
			}
		})
	}
}

func TestFetchIndexPicksHostPlatform(t *testing.T) {
	amd := testimage.Must(t)(testimage.Busybox(testimage.Options{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}))
	arm := testimage.Must(t)(testimage.Busybox(testimage.Options{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}))
	idx, err := testimage.Index(arm, amd)
	if err != nil {
		t.Fatal(err)
	}
	reg := newFakeRegistry(t)
	if _, err := testregistry.PushIndex(context.Background(), reg.host+"/test/multiarch:latest", idx); err != nil {
		t.Fatal(err)
	}
	for _, p := range []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}} {
		want, _ := amd.Digest()
		if p.Architecture == "arm64" {
			want, _ = arm.Digest()
		}
		got, err := fetch.Fetch(context.Background(), mustRef(t, reg.host+"/test/multiarch:latest"), fetch.Options{Store: openStore(t), Platform: &p})
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if got.Digest != want.String() || got.Arch != p.Architecture {
			t.Errorf("%s: got %s (%s), want %s", p, got.Digest, got.Arch, want)
		}
	}
	_, err = fetch.Fetch(context.Background(), mustRef(t, reg.host+"/test/multiarch:latest"), fetch.Options{Store: openStore(t), Platform: &v1.Platform{OS: "linux", Architecture: "s390x"}})
	if !errors.Is(err, image.ErrNotFound) || !strings.Contains(err.Error(), "linux/s390x") {
		t.Errorf("missing platform: got %v", err)
	}
}

func TestFetchOCILayoutAndDockerArchive(t *testing.T) {
	img := testimage.Must(t)(testimage.MultiLayer(testimage.Options{}))
	dir := filepath.Join(t.TempDir(), "layout")
	want, err := testimage.WriteLayout(dir, "v1", img)
	if err != nil {
		t.Fatal(err)
	}
	st := openStore(t)
	for _, ref := range []string{"oci:" + dir + ":v1", "oci:" + dir} {
		got, err := fetch.Fetch(context.Background(), mustRef(t, ref), fetch.Options{Store: st})
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		if got.Digest != want.String() {
			t.Errorf("%s: digest %s, want %s", ref, got.Digest, want)
		}
	}
	if _, err := fetch.Fetch(context.Background(), mustRef(t, "oci:"+dir+":nope"), fetch.Options{Store: st}); !errors.Is(err, image.ErrNotFound) || !strings.Contains(err.Error(), "v1") {
		t.Errorf("unknown tag: got %v, want ErrNotFound listing the tags", err)
	}

	archive := filepath.Join(t.TempDir(), "img.tar")
	if err := testimage.WriteDockerArchive(archive, "127.0.0.1:5000/test/archive:v1", img); err != nil {
		t.Fatal(err)
	}
	got, err := fetch.Fetch(context.Background(), mustRef(t, "docker-archive:"+archive), fetch.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	wantCfg, _ := img.ConfigName()
	if got.Config != wantCfg.String() || len(got.Layers) != 3 {
		t.Errorf("archive: config %s with %d layers, want %s with 3", got.Config, len(got.Layers), wantCfg)
	}
	for _, l := range got.Layers {
		d, _ := v1.NewHash(l.Digest)
		if !st.HasLayer(d) {
			t.Errorf("archive layer %s not extracted", d)
		}
	}
}

// TestVerifyRunsBeforeBlobs proves the order: the verifier sees the
// manifest digest before any config or layer byte is requested, and a
// refusal leaves nothing behind.
func TestVerifyRunsBeforeBlobs(t *testing.T) {
	img := testimage.Must(t)(testimage.Busybox(testimage.Options{}))
	reg := newFakeRegistry(t)
	want := push(t, reg.host+"/test/busybox:v1", img)
	st := openStore(t)
	before := reg.blobGets.Load()
	refused := errors.New("refused by test policy")
	var seen v1.Hash
	_, err := fetch.Fetch(context.Background(), mustRef(t, reg.host+"/test/busybox:v1"), fetch.Options{Store: st, Verify: func(_ context.Context, tg fetch.Target) error {
		seen = tg.Digest
		return refused
	}})
	if !errors.Is(err, refused) {
		t.Fatalf("got %v, want the verifier's refusal", err)
	}
	if seen != want {
		t.Errorf("verifier saw %s, want %s", seen, want)
	}
	if n := reg.blobGets.Load() - before; n != 0 {
		t.Errorf("%d blob requests before verification", n)
	}
	assertNothingCommitted(t, st)
	if ents, _ := os.ReadDir(filepath.Join(st.Root(), "blobs/sha256")); len(ents) != 0 {
		t.Errorf("%d blobs stored for a refused image", len(ents))
	}
}

// hostileImage is busybox plus a layer that tries to escape.
func hostileImage(t *testing.T) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "../../../escaped-by-karman-test", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3})
	tw.Write([]byte("bad"))
	tw.Close()
	base := testimage.Must(t)(testimage.Busybox(testimage.Options{}))
	img, err := mutate.AppendLayers(base, static.NewLayer(buf.Bytes(), types.OCIUncompressedLayer))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestFetchBadInput(t *testing.T) {
	img := testimage.Must(t)(testimage.Busybox(testimage.Options{}))
	layers, _ := img.Layers()
	layerDigest, _ := layers[0].Digest()
	rc, _ := layers[0].Compressed()
	layerBytes, _ := io.ReadAll(rc)
	cfgDigest, _ := img.ConfigName()
	cfgBytes, _ := img.RawConfigFile()

	artifact := mutate.ConfigMediaType(img, "application/vnd.example.chart.config.v1+json")
	foreign, err := mutate.AppendLayers(img, static.NewLayer([]byte("x"), types.DockerForeignLayer))
	if err != nil {
		t.Fatal(err)
	}
	badDiff, err := mutate.ConfigFile(img, func() *v1.ConfigFile {
		c, _ := img.ConfigFile()
		c = c.DeepCopy()
		c.RootFS.DiffIDs[0] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
		return c
	}())
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		img        v1.Image
		middleware func(w http.ResponseWriter, r *http.Request) bool
		ref        string // default: the pushed image
		want       error
		wantText   string
	}{
		{name: "not found", ref: "/test/nothing:here", want: image.ErrNotFound, wantText: "not found"},
		{name: "unknown tag", ref: "/test/img:nope", want: image.ErrNotFound},
		{name: "unauthorized", want: image.ErrUnauthorized, wantText: "docker login", middleware: func(w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return true
		}},
		{name: "tampered layer", want: image.ErrDigestMismatch, middleware: serveBlob(layerDigest, layerBytes, func(b []byte) []byte {
			b = bytes.Clone(b)
			b[len(b)/2] ^= 0xff
			return b
		})},
		{name: "truncated layer", want: image.ErrDigestMismatch, wantText: "truncated", middleware: serveBlob(layerDigest, layerBytes, func(b []byte) []byte { return b[:len(b)/2] })},
		{name: "tampered config", want: image.ErrDigestMismatch, middleware: serveBlob(cfgDigest, cfgBytes, func(b []byte) []byte { return bytes.Replace(b, []byte("amd64"), []byte("AMD64"), 1) })},
		{name: "schema1", want: image.ErrUnsupported, wantText: "schema 1", middleware: func(w http.ResponseWriter, r *http.Request) bool {
			if !strings.Contains(r.URL.Path, "/manifests/") {
				return false
			}
			w.Header().Set("Content-Type", string(types.DockerManifestSchema1Signed))
			w.Write([]byte(`{"schemaVersion":1,"name":"test/img","tag":"v1","fsLayers":[],"history":[]}`))
			return true
		}},
		{name: "artifact config", img: artifact, want: image.ErrUnsupported, wantText: "not a container image"},
		{name: "foreign layer", img: foreign, want: image.ErrUnsupported, wantText: "foreign"},
		{name: "diffID mismatch", img: badDiff, want: image.ErrDigestMismatch, wantText: "image config says"},
		{name: "hostile layer", img: hostileImage(t), want: layer.ErrUnsafePath},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := newFakeRegistry(t)
			pimg := img
			if tc.img != nil {
				pimg = tc.img
			}
			push(t, reg.host+"/test/img:v1", pimg)
			reg.middleware = tc.middleware
			ref := reg.host + "/test/img:v1"
			if tc.ref != "" {
				ref = reg.host + tc.ref
			}
			outside := t.TempDir()
			st, err := store.Open(filepath.Join(outside, "store"), nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = fetch.Fetch(context.Background(), mustRef(t, ref), fetch.Options{Store: st})
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not say %q", err, tc.wantText)
			}
			assertNothingCommitted(t, st)
			ents, _ := os.ReadDir(outside)
			if len(ents) != 1 {
				t.Errorf("entries beside the store: %v", ents)
			}
			if _, err := os.Lstat("/escaped-by-karman-test"); err == nil {
				t.Errorf("hostile layer wrote outside the store")
			}
		})
	}
}

// serveBlob serves blob d as edit(data) instead of the stored bytes.
func serveBlob(d v1.Hash, data []byte, edit func([]byte) []byte) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+d.String()) {
			return false
		}
		w.Write(edit(data))
		return true
	}
}
