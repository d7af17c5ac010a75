package testimage

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/karman-project/karman/tests/testenv"
)

type entry struct {
	hdr  *tar.Header
	data []byte
}

// readTar reads a tar stream strictly, checking header hygiene: relative
// names, fixed ownership, parents before children, no duplicates.
func readTar(t *testing.T, r io.Reader) map[string]entry {
	t.Helper()
	tr := tar.NewReader(r)
	entries := map[string]entry{}
	var order []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading tar after %v: %v", order[max(0, len(order)-3):], err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading %s: %v", h.Name, err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if strings.HasPrefix(name, "/") || strings.Contains(name, "..") && !strings.Contains(path.Base(name), ".wh.") {
			t.Errorf("bad entry name %q", h.Name)
		}
		if _, dup := entries[name]; dup {
			t.Errorf("duplicate entry %q", name)
		}
		if dir := path.Dir(name); dir != "." {
			if p, ok := entries[dir]; !ok || p.hdr.Typeflag != tar.TypeDir {
				t.Errorf("%q comes before its directory %q", name, dir)
			}
		}
		if h.Typeflag == tar.TypeDir && !strings.HasSuffix(h.Name, "/") {
			t.Errorf("directory %q lacks a trailing slash", h.Name)
		}
		if name != "home/karman" && (h.Uid != 0 || h.Gid != 0) {
			t.Errorf("%s owned by %d:%d", name, h.Uid, h.Gid)
		}
		if !h.ModTime.Equal(epoch) {
			t.Errorf("%s mtime %v", name, h.ModTime)
		}
		entries[name] = entry{h, data}
		order = append(order, name)
	}
	return entries
}

func layerEntries(t *testing.T, l v1.Layer) map[string]entry {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	return readTar(t, rc)
}

func layers(t *testing.T, img v1.Image) []v1.Layer {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

// validateImage runs ggcr's validate.Image; its layer check only understands
// gzip, so other layers get validate.Fast plus our own digest checks.
func validateImage(t *testing.T, img v1.Image) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	allGzip := true
	for _, l := range m.Layers {
		allGzip = allGzip && l.MediaType == types.OCILayer
	}
	if allGzip {
		if err := validate.Image(img); err != nil {
			t.Fatalf("validate: %v", err)
		}
		return
	}
	if err := validate.Image(img, validate.Fast); err != nil {
		t.Fatalf("validate: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers(t, img) {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		digest, size, err := v1.SHA256(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if digest != m.Layers[i].Digest || size != m.Layers[i].Size {
			t.Errorf("layer %d: blob %s (%d bytes), manifest says %s (%d)", i, digest, size, m.Layers[i].Digest, m.Layers[i].Size)
		}
		rc, err = l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		diffID, _, err := v1.SHA256(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if diffID != cf.RootFS.DiffIDs[i] {
			t.Errorf("layer %d: uncompressed %s, config says %s", i, diffID, cf.RootFS.DiffIDs[i])
		}
	}
}

func TestBusybox(t *testing.T) {
	img := Must(t)(Busybox(Options{}))
	validateImage(t, img)
	mt, _ := img.MediaType()
	if mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s", mt)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("config media type %s", m.Config.MediaType)
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != types.OCILayer {
		t.Fatalf("layers %+v", m.Layers)
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	if diff := cmp.Diff([]string{"/bin/sh"}, cf.Config.Cmd); diff != "" {
		t.Errorf("Cmd (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, cf.Config.Env); diff != "" {
		t.Errorf("Env (-want +got):\n%s", diff)
	}
	if len(cf.Config.Entrypoint) != 0 {
		t.Errorf("Entrypoint %q", cf.Config.Entrypoint)
	}

	es := layerEntries(t, layers(t, img)[0])
	bb, ok := es["bin/busybox"]
	if !ok || bb.hdr.Typeflag != tar.TypeReg || bb.hdr.Mode != 0o755 || len(bb.data) < 100<<10 || !bytes.HasPrefix(bb.data, []byte("\x7fELF")) {
		t.Errorf("bin/busybox: %+v", bb.hdr)
	}
	applets, err := Applets()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "ls", "cat", "id", "sleep"} {
		if !slices.Contains(applets, a) {
			t.Errorf("applet %s missing from %v", a, applets)
		}
	}
	for _, a := range applets {
		e, ok := es["bin/"+a]
		if !ok || e.hdr.Typeflag != tar.TypeSymlink || e.hdr.Linkname != "busybox" {
			t.Errorf("bin/%s: %+v", a, e.hdr)
		}
	}
	for name, want := range map[string]int64{"tmp": 0o1777, "root": 0o700, "home/karman": 0o755, "etc": 0o755, "dev": 0o755, "proc": 0o755} {
		e, ok := es[name]
		if !ok || e.hdr.Typeflag != tar.TypeDir || e.hdr.Mode != want {
			t.Errorf("%s: %+v, want dir mode %o", name, e.hdr, want)
		}
	}
	if h := es["home/karman"].hdr; h.Uid != 1000 || h.Gid != 1000 {
		t.Errorf("home/karman owned by %d:%d", h.Uid, h.Gid)
	}
	passwd := string(es["etc/passwd"].data)
	for _, line := range []string{"root:x:0:0:", "nobody:x:65534:65534:", "karman:x:1000:1000:"} {
		if !strings.Contains(passwd, "\n"+line) && !strings.HasPrefix(passwd, line) {
			t.Errorf("/etc/passwd lacks %q:\n%s", line, passwd)
		}
	}
	if g := string(es["etc/group"].data); !strings.Contains(g, "karman:x:1000:") || !strings.HasPrefix(g, "root:x:0:") {
		t.Errorf("/etc/group:\n%s", g)
	}
}

func TestOptions(t *testing.T) {
	img := Must(t)(Busybox(Options{
		Platform:   &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"},
		Entrypoint: []string{"/bin/echo"},
		Env:        []string{"FOO=bar", "PATH=/bin"},
	}))
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "arm64" || cf.Variant != "v8" {
		t.Errorf("platform %+v", cf.Platform())
	}
	if diff := cmp.Diff([]string{"/bin/echo"}, cf.Config.Entrypoint); diff != "" {
		t.Errorf("Entrypoint (-want +got):\n%s", diff)
	}
	if len(cf.Config.Cmd) != 0 {
		t.Errorf("Cmd %q, want none with an Entrypoint", cf.Config.Cmd)
	}
	if diff := cmp.Diff([]string{"PATH=/bin", "FOO=bar"}, cf.Config.Env); diff != "" {
		t.Errorf("Env (-want +got):\n%s", diff)
	}

	img = Must(t)(Busybox(Options{Cmd: []string{"sleep", "1"}}))
	cf, _ = img.ConfigFile()
	if diff := cmp.Diff([]string{"sleep", "1"}, cf.Config.Cmd); diff != "" {
		t.Errorf("Cmd (-want +got):\n%s", diff)
	}
}

func TestDeterministic(t *testing.T) {
	for _, c := range []Compression{Gzip, Zstd, Uncompressed} {
		a := Must(t)(MultiLayer(Options{Compression: c}))
		b := Must(t)(MultiLayer(Options{Compression: c}))
		da, _ := a.Digest()
		db, _ := b.Digest()
		if da != db {
			t.Errorf("%v: digests differ: %s vs %s", c, da, db)
		}
	}
}

func TestCompression(t *testing.T) {
	var diffIDs [][]v1.Hash
	for c, want := range map[Compression]types.MediaType{
		Gzip:         "application/vnd.oci.image.layer.v1.tar+gzip",
		Zstd:         "application/vnd.oci.image.layer.v1.tar+zstd",
		Uncompressed: "application/vnd.oci.image.layer.v1.tar",
	} {
		t.Run(c.String(), func(t *testing.T) {
			img := Must(t)(MultiLayer(Options{Compression: c}))
			validateImage(t, img)
			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Layers) != 3 {
				t.Fatalf("%d layers", len(m.Layers))
			}
			for i, l := range m.Layers {
				if l.MediaType != want {
					t.Errorf("layer %d media type %s, want %s", i, l.MediaType, want)
				}
			}
			cf, _ := img.ConfigFile()
			diffIDs = append(diffIDs, cf.RootFS.DiffIDs)
			blob, err := layers(t, img)[0].Compressed()
			if err != nil {
				t.Fatal(err)
			}
			head := make([]byte, 4)
			io.ReadFull(blob, head)
			blob.Close()
			magic := map[Compression][]byte{Gzip: {0x1f, 0x8b}, Zstd: {0x28, 0xb5, 0x2f, 0xfd}, Uncompressed: []byte("bin/")}[c]
			if !bytes.HasPrefix(head, magic) {
				t.Errorf("blob starts with % x, want % x", head, magic)
			}
		})
	}
	for _, d := range diffIDs[1:] {
		if diff := cmp.Diff(diffIDs[0], d); diff != "" {
			t.Errorf("diff IDs depend on compression (-first +other):\n%s", diff)
		}
	}
}

func TestMultiLayer(t *testing.T) {
	img := Must(t)(MultiLayer(Options{}))
	ls := layers(t, img)
	if len(ls) != 3 {
		t.Fatalf("%d layers", len(ls))
	}
	l2 := layerEntries(t, ls[1])
	for _, n := range []string{"data/keep", "data/gone", "data/dir/a", "etc/motd"} {
		if e, ok := l2[n]; !ok || e.hdr.Typeflag != tar.TypeReg {
			t.Errorf("layer 2 lacks file %s", n)
		}
	}
	if got := string(l2["etc/motd"].data); got != "layer2\n" {
		t.Errorf("layer 2 motd %q", got)
	}
	l3 := layerEntries(t, ls[2])
	for _, n := range []string{"data/.wh.gone", "data/dir/.wh..wh..opq", "data/dir/b", "etc/motd"} {
		if e, ok := l3[n]; !ok || e.hdr.Typeflag != tar.TypeReg {
			t.Errorf("layer 3 lacks %s", n)
		}
	}
	if got := string(l3["etc/motd"].data); got != "layer3\n" {
		t.Errorf("layer 3 motd %q", got)
	}

	// Flattening applies the whiteouts.
	rc := mutate.Extract(img)
	defer rc.Close()
	flat := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		flat[strings.TrimSuffix(h.Name, "/")] = string(data)
	}
	for _, n := range []string{"data/gone", "data/dir/a"} {
		if _, ok := flat[n]; ok {
			t.Errorf("flattened image still has %s", n)
		}
	}
	for n, want := range map[string]string{"data/keep": "keep\n", "data/dir/b": "b\n", "etc/motd": "layer3\n"} {
		if got, ok := flat[n]; !ok || got != want {
			t.Errorf("flattened %s = %q (present %v), want %q", n, got, ok, want)
		}
	}
}

func TestWriteLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "layout")
	img := Must(t)(MultiLayer(Options{Compression: Zstd}))
	digest, err := WriteLayout(dir, "latest", img)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if digest != want {
		t.Errorf("WriteLayout returned %s, image digest %s", digest, want)
	}
	// A second tag is added; rewriting a tag replaces it.
	other := Must(t)(Busybox(Options{}))
	if _, err := WriteLayout(dir, "other", img); err != nil {
		t.Fatal(err)
	}
	otherDigest, err := WriteLayout(dir, "other", other)
	if err != nil {
		t.Fatal(err)
	}

	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]v1.Hash{}
	for _, d := range im.Manifests {
		got[d.Annotations["org.opencontainers.image.ref.name"]] = d.Digest
		if d.MediaType != types.OCIManifestSchema1 || d.Platform == nil || d.Platform.OS != "linux" {
			t.Errorf("descriptor %+v", d)
		}
	}
	if diff := cmp.Diff(map[string]v1.Hash{"latest": want, "other": otherDigest}, got); diff != "" {
		t.Errorf("index.json (-want +got):\n%s", diff)
	}
	back, err := idx.Image(want)
	if err != nil {
		t.Fatal(err)
	}
	validateImage(t, back)
	m, _ := back.Manifest()
	if m.Layers[2].MediaType != types.OCILayerZStd {
		t.Errorf("layer media type %s", m.Layers[2].MediaType)
	}

	// Indexes too.
	arm := Must(t)(Busybox(Options{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}))
	ii, err := Index(other, arm)
	if err != nil {
		t.Fatal(err)
	}
	iiDigest, err := WriteLayoutIndex(dir, "multi", ii)
	if err != nil {
		t.Fatal(err)
	}
	idx, _ = layout.ImageIndexFromPath(dir)
	sub, err := idx.ImageIndex(iiDigest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(sub); err != nil {
		t.Fatalf("validate index: %v", err)
	}
}

func TestWriteDockerArchive(t *testing.T) {
	p := filepath.Join(t.TempDir(), "img.tar")
	img := Must(t)(MultiLayer(Options{}))
	if err := WriteDockerArchive(p, "karman-test/busybox:v1", img); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag("karman-test/busybox:v1")
	if err != nil {
		t.Fatal(err)
	}
	back, err := tarball.ImageFromPath(p, &tag)
	if err != nil {
		t.Fatal(err)
	}
	validateImage(t, back)
	want, _ := img.ConfigName()
	got, err := back.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("config digest %s, want %s", got, want)
	}
	wls, bls := layers(t, img), layers(t, back)
	if len(wls) != len(bls) {
		t.Fatalf("%d layers, want %d", len(bls), len(wls))
	}
	for i := range wls {
		wd, _ := wls[i].Digest()
		bd, _ := bls[i].Digest()
		if wd != bd {
			t.Errorf("layer %d digest %s, want %s", i, bd, wd)
		}
	}
	if err := WriteDockerArchive(p, "Not A Tag", img); err == nil {
		t.Error("bad tag accepted")
	}
}

func TestIndex(t *testing.T) {
	amd := Must(t)(Busybox(Options{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}))
	arm := Must(t)(Busybox(Options{Platform: &v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}}))
	idx, err := Index(amd, arm)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("validate: %v", err)
	}
	mt, _ := idx.MediaType()
	if mt != types.OCIImageIndex {
		t.Errorf("index media type %s", mt)
	}
	im, _ := idx.IndexManifest()
	var got []string
	for _, d := range im.Manifests {
		got = append(got, d.Platform.String())
	}
	if diff := cmp.Diff([]string{"linux/amd64", "linux/arm/v7"}, got); diff != "" {
		t.Errorf("platforms (-want +got):\n%s", diff)
	}
}

func TestBigSmall(t *testing.T) {
	const mb, files, nlayers = 8, 40, 3
	img := Must(t)(Big(Options{}, mb, files, nlayers))
	validateImage(t, img)
	ls := layers(t, img)
	if len(ls) != 1+nlayers {
		t.Fatalf("%d layers", len(ls))
	}
	var data, count int64
	for _, l := range ls[1:] {
		for n, e := range layerEntries(t, l) {
			if e.hdr.Typeflag == tar.TypeReg {
				if !strings.HasPrefix(n, "big/layer") {
					t.Errorf("unexpected file %s", n)
				}
				data += e.hdr.Size
				count++
			}
		}
	}
	if count != files || data != mb<<20 {
		t.Errorf("%d files with %d bytes, want %d with %d", count, data, files, mb<<20)
	}
	again := Must(t)(Big(Options{}, mb, files, nlayers))
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("Big is not deterministic: %s vs %s", d1, d2)
	}
}

func TestBigRatio(t *testing.T) {
	testenv.SkipIfShort(t, "builds 200 MB of layers")
	img := Must(t)(Big(Options{}, 200, 900, 6))
	var compressed int64
	for _, l := range layers(t, img)[1:] {
		s, err := l.Size()
		if err != nil {
			t.Fatal(err)
		}
		compressed += s
	}
	ratio := float64(compressed) / float64(200<<20)
	t.Logf("Big(200, 900, 6): %.1f MiB gzip, ratio %.2f", float64(compressed)/(1<<20), ratio)
	if ratio < 0.3 || ratio > 0.5 {
		t.Errorf("gzip ratio %.2f, want about 0.4", ratio)
	}
}

func TestBigArgs(t *testing.T) {
	Require(t)
	if _, err := Big(Options{}, 1, 0, 1); err == nil {
		t.Error("files=0 accepted")
	}
	if _, err := Big(Options{}, 1, 1, 0); err == nil {
		t.Error("layers=0 accepted")
	}
}

func TestParseCompression(t *testing.T) {
	Require(t)
	for _, c := range []Compression{Gzip, Zstd, Uncompressed} {
		got, err := ParseCompression(c.String())
		if err != nil || got != c {
			t.Errorf("ParseCompression(%q) = %v, %v", c.String(), got, err)
		}
	}
	if _, err := ParseCompression("brotli"); err == nil {
		t.Error("brotli accepted")
	}
	if _, err := Busybox(Options{Compression: 42}); err == nil || errors.Is(err, ErrNoBusybox) {
		t.Errorf("bad compression: %v", err)
	}
}
