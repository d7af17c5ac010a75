package store_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/image/fetch"
	"github.com/karman-project/karman/image/layer"
	"github.com/karman-project/karman/image/store"
	"github.com/karman-project/karman/tests/testimage"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "images"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// fetchLayout stores img from an OCI layout under tag and returns it.
func fetchLayout(t *testing.T, st *store.Store, tag string, img v1.Image) image.Image {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	if _, err := testimage.WriteLayout(dir, tag, img); err != nil {
		t.Fatal(err)
	}
	ref, err := image.ParseReference("oci:" + dir + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fetch.Fetch(context.Background(), ref, fetch.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func count(t *testing.T, st *store.Store, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(st.Root(), dir))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestPutBlobVerifies(t *testing.T) {
	st := openStore(t)
	data := []byte("hello")
	d, _, _ := v1.SHA256(strings.NewReader("hello"))
	if err := st.PutBlob(d, 4, data); !errors.Is(err, image.ErrDigestMismatch) {
		t.Errorf("wrong size: got %v", err)
	}
	other, _, _ := v1.SHA256(strings.NewReader("other"))
	if err := st.PutBlob(other, 5, data); !errors.Is(err, image.ErrDigestMismatch) {
		t.Errorf("wrong digest: got %v", err)
	}
	if n := count(t, st, "blobs/sha256") + count(t, st, "tmp"); n != 0 {
		t.Errorf("%d files left by refused blobs", n)
	}
	if err := st.PutBlob(d, 5, data); err != nil {
		t.Fatal(err)
	}
	if b, err := st.ReadBlob(d, 100); err != nil || string(b) != "hello" {
		t.Errorf("ReadBlob = %q, %v", b, err)
	}
	// A blob corrupted on disk is caught when read.
	os.WriteFile(st.BlobPath(d), []byte("jello"), 0o600)
	if _, err := st.ReadBlob(d, 100); !errors.Is(err, image.ErrDigestMismatch) {
		t.Errorf("corrupt blob: got %v", err)
	}
}

func TestParseDigestRefusesHostileNames(t *testing.T) {
	for _, s := range []string{"sha256:../../etc", "sha512:" + strings.Repeat("a", 128), "sha256:" + strings.Repeat("A", 64), "sha256:abc", ""} {
		if _, err := store.ParseDigest(s); err == nil {
			t.Errorf("ParseDigest(%q) accepted", s)
		}
	}
}

func TestRefsConcurrentUpdates(t *testing.T) {
	st := openStore(t)
	d, _, _ := v1.SHA256(strings.NewReader("x"))
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			if err := st.SetRef(context.Background(), fmt.Sprintf("127.0.0.1:5000/r%d:latest", i), d); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	refs, err := st.Refs()
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 32 {
		t.Errorf("%d refs after 32 concurrent updates", len(refs))
	}
}

func TestResolve(t *testing.T) {
	st := openStore(t)
	img := fetchLayout(t, st, "v1", testimage.Must(t)(testimage.Busybox(testimage.Options{})))
	d, _ := v1.NewHash(img.Digest)
	for _, arg := range []string{img.Names[0], img.Digest, d.Hex, d.Hex[:8], "sha256:" + d.Hex[:10]} {
		got, err := st.Resolve(arg)
		if err != nil || got != d {
			t.Errorf("Resolve(%q) = %s, %v; want %s", arg, got, err, d)
		}
	}
	for _, arg := range []string{"127.0.0.1:5000/nope:v1", "ffffffffff", d.Hex[:4]} {
		if _, err := st.Resolve(arg); !errors.Is(err, image.ErrNotFound) {
			t.Errorf("Resolve(%q): got %v, want ErrNotFound", arg, err)
		}
	}
}

func TestUntagAndGC(t *testing.T) {
	st := openStore(t)
	multi := fetchLayout(t, st, "multi", testimage.Must(t)(testimage.MultiLayer(testimage.Options{})))
	busy := fetchLayout(t, st, "busy", testimage.Must(t)(testimage.Busybox(testimage.Options{})))
	// MultiLayer's first layer is Busybox's only layer: stored once.
	if multi.Layers[0].Digest != busy.Layers[0].Digest {
		t.Fatalf("test images do not share their base layer")
	}
	if n := count(t, st, "layers/sha256"); n != 3 {
		t.Errorf("%d extracted layers, want 3 (the shared one once)", n)
	}
	// Leftovers of a killed fetch.
	os.WriteFile(filepath.Join(st.Root(), "tmp", "blob-killed"), []byte("partial"), 0o600)

	removed, _, err := st.Untag(context.Background(), multi.Names[0])
	if err != nil || len(removed) != 1 {
		t.Fatalf("Untag = %v, %v", removed, err)
	}
	res, err := st.GC(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// multi's two own layers, its manifest and config go; the shared base
	// layer stays for busy.
	if res.Layers != 2 || res.Blobs != 4 || res.Temp != 1 || res.Bytes == 0 {
		t.Errorf("gc = %+v, want 2 layers, 4 blobs, 1 temp", res)
	}
	bd, _ := v1.NewHash(busy.Layers[0].Digest)
	if !st.HasLayer(bd) || !st.HasBlob(bd) {
		t.Errorf("gc removed a layer still used by %s", busy.Names[0])
	}
	if _, err := st.Image(mustHash(t, busy.Digest)); err != nil {
		t.Errorf("remaining image broken after gc: %v", err)
	}

	// A lease keeps an image without names while its owner exists.
	owner := t.TempDir()
	if err := st.AddLease("pod1", mustHash(t, busy.Digest), owner); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Untag(context.Background(), busy.Digest); err != nil {
		t.Fatal(err)
	}
	if res, _ := st.GC(context.Background()); res.Blobs+res.Layers != 0 {
		t.Errorf("gc removed leased content: %+v", res)
	}
	os.RemoveAll(owner)
	res, err = st.GC(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Leases != 1 || res.Layers != 1 || res.Blobs != 3 {
		t.Errorf("gc after the owner went = %+v, want the lease, 1 layer, 3 blobs", res)
	}
	for _, dir := range []string{"blobs/sha256", "layers/sha256", "leases", "tmp"} {
		if n := count(t, st, dir); n != 0 {
			t.Errorf("%s has %d entries after everything was collected", dir, n)
		}
	}
}

func TestGCWaitsForFetches(t *testing.T) {
	st := openStore(t)
	lk, err := st.Use(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := st.GC(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("gc while a fetch holds the store: got %v, want it to wait", err)
	}
	lk.Unlock()
	if _, err := st.GC(context.Background()); err != nil {
		t.Errorf("gc after the fetch: %v", err)
	}
}

// TestIngestLayerOnce: concurrent ingests of one layer download it once.
func TestIngestLayerOnce(t *testing.T) {
	img := testimage.Must(t)(testimage.Busybox(testimage.Options{}))
	layers, _ := img.Layers()
	l := layers[0]
	d, _ := l.Digest()
	size, _ := l.Size()
	diff, _ := l.DiffID()
	mt, _ := l.MediaType()
	st := openStore(t)
	var opens atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			_, err := st.IngestLayer(context.Background(), v1.Descriptor{Digest: d, Size: size, MediaType: mt}, diff, func(context.Context) (io.ReadCloser, error) {
				opens.Add(1)
				return l.Compressed()
			}, nil, layer.Unpacker{})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := opens.Load(); n != 1 {
		t.Errorf("layer downloaded %d times, want 1", n)
	}
	if !st.HasLayer(d) || !st.HasBlob(d) || count(t, st, "tmp") != 0 {
		t.Errorf("layer not committed cleanly")
	}
}

func mustHash(t *testing.T, s string) v1.Hash {
	t.Helper()
	h, err := v1.NewHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
