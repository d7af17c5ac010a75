package testimage

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/karman-project/karman/tests/testenv"
)

// Compression selects how image layers are compressed.
type Compression int

const (
	// Gzip layers use application/vnd.oci.image.layer.v1.tar+gzip.
	Gzip Compression = iota
	// Zstd layers use application/vnd.oci.image.layer.v1.tar+zstd.
	Zstd
	// Uncompressed layers use application/vnd.oci.image.layer.v1.tar.
	Uncompressed
)

// Options configures the images built by this package. The zero value is a
// gzip-compressed linux/<host arch> image running /bin/sh.
type Options struct {
	// Compression of every layer.
	Compression Compression
	// Platform recorded in the image config. Default linux/runtime.GOARCH
	// (linux/amd64 on the CI hosts): the busybox binary is the host's, so
	// other platforms are only good for platform-resolution tests.
	Platform *v1.Platform
	// Entrypoint of the image config (default none).
	Entrypoint []string
	// Cmd of the image config. nil means ["/bin/sh"] when Entrypoint is
	// also nil and no Cmd when an Entrypoint is given; use a non-nil empty
	// slice for an explicitly empty Cmd.
	Cmd []string
	// Env entries ("KEY=value") added to the default
	// PATH=/usr/sbin:/usr/bin:/sbin:/bin; an entry for a key that is
	// already present (PATH) replaces it.
	Env []string
}

// HostBusybox is the host binary that Busybox copies into images.
const HostBusybox = "/bin/busybox"

// DefaultPath is the PATH in the image config.
const DefaultPath = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"

// RefNameAnnotation is the OCI annotation WriteLayout uses for the tag.
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// ErrNoBusybox is returned (wrapped) by the image builders when the host has
// no statically linked /bin/busybox. Use Require or Must in tests to turn it
// into testenv.Missing (a skip, or a failure in strict mode).
var ErrNoBusybox = errors.New("needs Debian's busybox-static (apt-get install busybox-static)")

// Passwd and Group are the contents of /etc/passwd and /etc/group in Busybox.
const (
	Passwd = "root:x:0:0:root:/root:/bin/sh\n" +
		"karman:x:1000:1000:karman:/home/karman:/bin/sh\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	Group = "root:x:0:\n" +
		"karman:x:1000:\n" +
		"nobody:x:65534:\n"
)

// Require stops t (testenv.Missing) unless the host has Debian's busybox-static.
func Require(t testing.TB) {
	t.Helper()
	if _, err := baseTar(); err != nil {
		if errors.Is(err, ErrNoBusybox) {
			missingBusybox(t)
		}
		t.Fatalf("testimage: %v", err)
	}
}

func missingBusybox(t testing.TB) {
	t.Helper()
	testenv.Missing(t, "Debian's busybox-static ("+HostBusybox+")", "apt-get install busybox-static")
}

// Must returns a function that unwraps an image builder's results: it stops
// t when busybox-static is missing and fails it on any other error.
//
//	img := testimage.Must(t)(testimage.Busybox(testimage.Options{}))
func Must(t testing.TB) func(v1.Image, error) v1.Image {
	return func(img v1.Image, err error) v1.Image {
		t.Helper()
		if err != nil {
			if errors.Is(err, ErrNoBusybox) {
				missingBusybox(t)
			}
			t.Fatalf("testimage: %v", err)
		}
		return img
	}
}

var (
	baseOnce    sync.Once
	baseTarData []byte
	baseApplets []string
	baseErr     error

	layerMu    sync.Mutex
	layerCache = map[Compression]*memLayer{}
)

// Applets returns the applet names of the host busybox (`busybox --list`,
// without "busybox" itself); each is a /bin/<applet> symlink in Busybox.
func Applets() ([]string, error) {
	if _, err := baseTar(); err != nil {
		return nil, err
	}
	return append([]string(nil), baseApplets...), nil
}

// baseTar returns the cached uncompressed tar of the busybox layer.
func baseTar() ([]byte, error) {
	baseOnce.Do(func() { baseTarData, baseApplets, baseErr = buildBaseTar() })
	return baseTarData, baseErr
}

func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s is not an ELF binary (%v): %w", path, err, ErrNoBusybox)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (Debian's busybox package?): %w", path, ErrNoBusybox)
		}
	}
	return nil
}

func buildBaseTar() ([]byte, []string, error) {
	bin, err := os.ReadFile(HostBusybox)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("%s missing: %w", HostBusybox, ErrNoBusybox)
		}
		return nil, nil, err
	}
	if err := checkStatic(HostBusybox); err != nil {
		return nil, nil, err
	}
	out, err := exec.Command(HostBusybox, "--list").Output()
	if err != nil {
		return nil, nil, fmt.Errorf("%s --list: %v: %w", HostBusybox, err, ErrNoBusybox)
	}
	var applets []string
	for _, a := range strings.Fields(string(out)) {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		applets = append(applets, a)
	}
	if len(applets) == 0 {
		return nil, nil, fmt.Errorf("%s --list printed no applets: %w", HostBusybox, ErrNoBusybox)
	}

	b := newTarBuilder(len(bin) + 512*len(applets) + 64<<10)
	b.dir("bin", 0o755)
	b.file("bin/busybox", 0o755, bin)
	for _, a := range applets {
		b.symlink("bin/"+a, "busybox")
	}
	b.dir("dev", 0o755)
	b.dir("etc", 0o755)
	b.file("etc/group", 0o644, []byte(Group))
	b.file("etc/passwd", 0o644, []byte(Passwd))
	b.dir("home", 0o755)
	b.ownedDir("home/karman", 0o755, 1000, 1000, "karman", "karman")
	b.dir("proc", 0o755)
	b.dir("root", 0o700)
	b.dir("sbin", 0o755)
	b.dir("sys", 0o755)
	b.dir("tmp", 0o1777)
	b.dir("usr", 0o755)
	b.dir("usr/bin", 0o755)
	b.dir("usr/sbin", 0o755)
	b.dir("var", 0o755)
	data, err := b.bytes()
	return data, applets, err
}

func busyboxLayer(c Compression) (*memLayer, error) {
	data, err := baseTar()
	if err != nil {
		return nil, err
	}
	layerMu.Lock()
	defer layerMu.Unlock()
	if l, ok := layerCache[c]; ok {
		return l, nil
	}
	l, err := newLayer(data, c)
	if err != nil {
		return nil, err
	}
	layerCache[c] = l
	return l, nil
}

func (o Options) platform() v1.Platform {
	if o.Platform != nil {
		return *o.Platform
	}
	return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

func (o Options) env() []string {
	env := []string{DefaultPath}
	for _, e := range o.Env {
		key, _, _ := strings.Cut(e, "=")
		replaced := false
		for i, have := range env {
			if k, _, _ := strings.Cut(have, "="); k == key {
				env[i], replaced = e, true
				break
			}
		}
		if !replaced {
			env = append(env, e)
		}
	}
	return env
}

func (o Options) cmd() []string {
	if o.Cmd == nil && o.Entrypoint == nil {
		return []string{"/bin/sh"}
	}
	return o.Cmd
}

func history(createdBy string) v1.History {
	return v1.History{Created: v1.Time{Time: epoch}, CreatedBy: createdBy, Comment: "karman tests/testimage"}
}

// Busybox returns a one-layer image holding the host's static busybox as
// /bin/busybox, a /bin/<applet> -> busybox symlink per applet, /etc/passwd
// (root, karman 1000:1000, nobody 65534:65534) and /etc/group, /tmp (1777),
// /root (0700), /home/karman (owned by 1000:1000) and empty /dev, /proc, /sys,
// /sbin, /usr/bin, /usr/sbin and /var. Config: Cmd ["/bin/sh"],
// Env [PATH=/usr/sbin:/usr/bin:/sbin:/bin], OS/architecture from
// opts.Platform; see Options for overrides. Manifest and config use OCI media
// types. Errors wrap ErrNoBusybox when busybox-static is missing.
func Busybox(opts Options) (v1.Image, error) {
	l, err := busyboxLayer(opts.Compression)
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: l, History: history("karman testimage: busybox")})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	p := opts.platform()
	if p.OS == "" || p.Architecture == "" {
		return nil, fmt.Errorf("testimage: platform %q needs an OS and an architecture", p.String())
	}
	cf.OS, cf.Architecture, cf.Variant, cf.OSVersion = p.OS, p.Architecture, p.Variant, p.OSVersion
	cf.OSFeatures = append([]string(nil), p.OSFeatures...)
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = append([]string(nil), opts.Entrypoint...)
	if c := opts.cmd(); c != nil {
		cf.Config.Cmd = append([]string{}, c...)
	}
	cf.Config.Env = opts.env()
	return mutate.ConfigFile(img, cf)
}

// Contents of the files in MultiLayer's extra layers.
const (
	MotdLayer2 = "layer2\n"
	MotdLayer3 = "layer3\n"
)

// MultiLayer returns Busybox plus two layers.
//
// Layer 2 adds /data/keep ("keep\n"), /data/gone ("gone\n"),
// /data/dir/a ("a\n") and /etc/motd ("layer2\n").
//
// Layer 3 whites out /data/gone (a "data/.wh.gone" entry), marks /data/dir
// opaque (a "data/dir/.wh..wh..opq" entry), adds /data/dir/b ("b\n") and
// rewrites /etc/motd ("layer3\n").
//
// The flattened result therefore has /data/keep, /data/dir/b and
// /etc/motd = "layer3\n", and neither /data/gone nor /data/dir/a.
func MultiLayer(opts Options) (v1.Image, error) {
	img, err := Busybox(opts)
	if err != nil {
		return nil, err
	}

	l2 := newTarBuilder(16 << 10)
	l2.dir("data", 0o755)
	l2.dir("data/dir", 0o755)
	l2.file("data/dir/a", 0o644, []byte("a\n"))
	l2.file("data/gone", 0o644, []byte("gone\n"))
	l2.file("data/keep", 0o644, []byte("keep\n"))
	l2.dir("etc", 0o755)
	l2.file("etc/motd", 0o644, []byte(MotdLayer2))

	l3 := newTarBuilder(16 << 10)
	l3.dir("data", 0o755)
	l3.file("data/.wh.gone", 0o644, nil)
	l3.dir("data/dir", 0o755)
	l3.file("data/dir/.wh..wh..opq", 0o644, nil)
	l3.file("data/dir/b", 0o644, []byte("b\n"))
	l3.dir("etc", 0o755)
	l3.file("etc/motd", 0o644, []byte(MotdLayer3))

	var adds []mutate.Addendum
	for i, b := range []*tarBuilder{l2, l3} {
		data, err := b.bytes()
		if err != nil {
			return nil, err
		}
		l, err := newLayer(data, opts.Compression)
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.Addendum{Layer: l, History: history(fmt.Sprintf("karman testimage: multilayer layer %d", i+2))})
	}
	return mutate.Append(img, adds...)
}

// WriteLayout writes img into the OCI image layout at dir (created if
// needed; an existing layout is added to) with the ref name annotation tag,
// so that `oci:DIR:TAG` resolves to it. An existing entry with the same tag
// is replaced. It returns the manifest digest.
func WriteLayout(dir, tag string, img v1.Image) (v1.Hash, error) {
	p, err := openLayout(dir)
	if err != nil {
		return v1.Hash{}, err
	}
	opts := []layout.Option{layout.WithAnnotations(map[string]string{RefNameAnnotation: tag})}
	if cf, err := img.ConfigFile(); err == nil && cf.OS != "" {
		opts = append(opts, layout.WithPlatform(*cf.Platform()))
	}
	if err := p.ReplaceImage(img, match.Annotation(RefNameAnnotation, tag), opts...); err != nil {
		return v1.Hash{}, fmt.Errorf("testimage: writing %s to layout %s: %w", tag, dir, err)
	}
	return img.Digest()
}

// WriteLayoutIndex is WriteLayout for an image index (see Index).
func WriteLayoutIndex(dir, tag string, idx v1.ImageIndex) (v1.Hash, error) {
	p, err := openLayout(dir)
	if err != nil {
		return v1.Hash{}, err
	}
	opts := []layout.Option{layout.WithAnnotations(map[string]string{RefNameAnnotation: tag})}
	if err := p.ReplaceIndex(idx, match.Annotation(RefNameAnnotation, tag), opts...); err != nil {
		return v1.Hash{}, fmt.Errorf("testimage: writing %s to layout %s: %w", tag, dir, err)
	}
	return idx.Digest()
}

func openLayout(dir string) (layout.Path, error) {
	if _, err := os.Stat(dir + "/index.json"); err == nil {
		return layout.FromPath(dir)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return "", fmt.Errorf("testimage: creating layout %s: %w", dir, err)
	}
	return p, nil
}

// WriteDockerArchive writes img as a `docker save` style tarball at path with
// the repo tag tag (e.g. "karman-test/busybox:latest"; a missing tag means
// ":latest").
func WriteDockerArchive(path, tag string, img v1.Image) error {
	t, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("testimage: repo tag %q: %w", tag, err)
	}
	return tarball.WriteToFile(path, t, img)
}

// Index wraps images in an OCI image index whose descriptors carry each
// image's platform (from its config), for platform-resolution tests.
func Index(imgs ...v1.Image) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var adds []mutate.IndexAddendum
	for i, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("testimage: image %d config: %w", i, err)
		}
		add := mutate.IndexAddendum{Add: img}
		if cf.OS != "" {
			add.Descriptor.Platform = cf.Platform()
		}
		adds = append(adds, add)
	}
	return mutate.AppendManifests(idx, adds...), nil
}
