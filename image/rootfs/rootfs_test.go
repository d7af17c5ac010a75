package rootfs_test

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/image/fetch"
	"github.com/karman-project/karman/image/rootfs"
	"github.com/karman-project/karman/image/store"
	"github.com/karman-project/karman/tests/testenv"
	"github.com/karman-project/karman/tests/testimage"
)

func storeImage(t *testing.T, st *store.Store, img v1.Image) v1.Hash {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	if _, err := testimage.WriteLayout(dir, "t", img); err != nil {
		t.Fatal(err)
	}
	ref, _ := image.ParseReference("oci:" + dir + ":t")
	got, err := fetch.Fetch(context.Background(), ref, fetch.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := v1.NewHash(got.Digest)
	return d
}

func mounted(t *testing.T, path string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

// TestRenderMultiLayer checks whiteouts, opaque directories and
// replacement across layers, with overlayfs and with the copy fallback.
func TestRenderMultiLayer(t *testing.T) {
	testenv.RequireRoot(t, "mounting overlayfs and creating whiteout devices")
	st, err := store.Open(filepath.Join(t.TempDir(), "images"), nil)
	if err != nil {
		t.Fatal(err)
	}
	d := storeImage(t, st, testimage.Must(t)(testimage.MultiLayer(testimage.Options{})))
	for _, noOverlay := range []bool{false, true} {
		name := map[bool]string{false: "overlay", true: "copy"}[noOverlay]
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pod")
			r, err := rootfs.Render(context.Background(), st, d, dir, "test-"+name, rootfs.Options{NoOverlay: noOverlay})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rootfs.Remove(st, dir, "test-"+name) })
			if r.Overlay == noOverlay || mounted(t, r.Path) == noOverlay {
				t.Fatalf("Overlay = %v, mounted = %v; want %v", r.Overlay, mounted(t, r.Path), !noOverlay)
			}
			if b, err := os.ReadFile(filepath.Join(r.Path, "etc/motd")); err != nil || string(b) != "layer3\n" {
				t.Errorf("etc/motd = %q, %v; want the top layer's", b, err)
			}
			if got := names(t, filepath.Join(r.Path, "data")); strings.Join(got, ",") != "dir,keep" {
				t.Errorf("data/ = %v, want dir,keep (gone is whited out)", got)
			}
			if got := names(t, filepath.Join(r.Path, "data/dir")); strings.Join(got, ",") != "b" {
				t.Errorf("data/dir = %v, want only b (opaque)", got)
			}
			if fi, err := os.Stat(filepath.Join(r.Path, "bin/sh")); err != nil || fi.Mode()&0o111 == 0 {
				t.Errorf("bin/sh: %v, %v", fi, err)
			}
			// Writes go to the pod, never to the shared layers.
			if err := os.WriteFile(filepath.Join(r.Path, "etc/motd"), []byte("pod\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			m, _ := st.Manifest(d)
			top := st.LayerPath(m.Layers[2].Digest)
			if b, _ := os.ReadFile(filepath.Join(top, "etc/motd")); string(b) != "layer3\n" {
				t.Errorf("pod write reached the shared layer: %q", b)
			}

			// The lease keeps the image through rm + gc.
			st.Untag(context.Background(), d.String())
			if _, err := st.GC(context.Background()); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(r.Path, "data/keep")); err != nil {
				t.Errorf("rootfs broken by image rm + gc: %q %v", b, err)
			}
			if err := rootfs.Remove(st, dir, "test-"+name); err != nil {
				t.Fatal(err)
			}
			if mounted(t, r.Path) {
				t.Errorf("still mounted after Remove")
			}
			if _, err := os.Lstat(dir); !os.IsNotExist(err) {
				t.Errorf("rendering dir left after Remove: %v", err)
			}
			// Put the name back for the next subtest.
			st.SetRef(context.Background(), "oci:/again", d)
		})
	}
}

// TestFlattenNeverWritesThroughLowerSymlink: a lower layer's symlink to a
// host directory, then an upper layer with a directory of that name.
func TestFlattenNeverWritesThroughLowerSymlink(t *testing.T) {
	testenv.RequireRoot(t, "creating files owned by root in a rendered rootfs")
	outside := t.TempDir()
	lower := tarLayer(t, &tar.Header{Name: "etc", Typeflag: tar.TypeSymlink, Linkname: outside})
	upper := tarLayer(t, &tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "etc/planted", Typeflag: tar.TypeReg, Mode: 0o644})
	base := testimage.Must(t)(testimage.Busybox(testimage.Options{}))
	img, err := mutate.AppendLayers(base, static.NewLayer(lower, types.OCIUncompressedLayer), static.NewLayer(upper, types.OCIUncompressedLayer))
	if err != nil {
		t.Fatal(err)
	}
	st, _ := store.Open(filepath.Join(t.TempDir(), "images"), nil)
	d := storeImage(t, st, img)
	for _, noOverlay := range []bool{false, true} {
		dir := filepath.Join(t.TempDir(), "pod")
		r, err := rootfs.Render(context.Background(), st, d, dir, "t", rootfs.Options{NoOverlay: noOverlay})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(r.Path, "etc/planted")); err != nil {
			t.Errorf("noOverlay=%v: upper directory not rendered: %v", noOverlay, err)
		}
		if got := names(t, outside); len(got) != 0 {
			t.Errorf("noOverlay=%v: wrote outside through a lower symlink: %v", noOverlay, got)
		}
		if err := rootfs.Remove(st, dir, "t"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRenderFailureLeavesNothing(t *testing.T) {
	st, _ := store.Open(filepath.Join(t.TempDir(), "images"), nil)
	dir := filepath.Join(t.TempDir(), "pod")
	missing := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}
	if _, err := rootfs.Render(context.Background(), st, missing, dir, "t", rootfs.Options{}); err == nil {
		t.Fatal("rendered an image that is not stored")
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Errorf("failed render left %s", dir)
	}
	if l, _ := st.Leases(); len(l) != 0 {
		t.Errorf("failed render left leases %v", l)
	}
}

func tarLayer(t *testing.T, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	return buf.Bytes()
}
