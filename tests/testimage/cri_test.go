package testimage

import (
	"archive/tar"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/karman-project/karman/tests/testenv"
)

// criImages builds CRIImages with a karman-lookalike built for the test.
func criImages(t *testing.T) map[string]CRIImage {
	t.Helper()
	testenv.RequireFile(t, DynamicBusybox, "scripts/setup.sh --tests (it unpacks Debian's dynamic busybox)")
	root, err := testenv.ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	la := filepath.Join(t.TempDir(), "karman-lookalike")
	cmd := exec.Command("go", "build", "-o", la, "./tests/cmd/karman-lookalike")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building karman-lookalike: %v\n%s", err, out)
	}
	imgs, err := CRIImages(CRIOptions{Lookalike: la})
	if err != nil {
		t.Fatal(err)
	}
	byRef := map[string]CRIImage{}
	for _, ci := range imgs {
		validateImage(t, ci.Image)
		for _, r := range ci.Refs {
			if _, dup := byRef[r]; dup {
				t.Errorf("%s built twice", r)
			}
			byRef[r] = ci
		}
	}
	return byRef
}

// flat is the union of an image's layers, later layers winning.
func flat(t *testing.T, ci CRIImage) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	for _, l := range layers(t, ci.Image) {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			out[strings.TrimSuffix(h.Name, "/")] = entry{hdr: h}
		}
		rc.Close()
	}
	return out
}

func TestCRIImages(t *testing.T) {
	imgs := criImages(t)
	// Every reference critest v1.37.0 pulls but the digest-pinned one.
	e2e, tools := "registry.k8s.io/e2e-test-images/", "gcr.io/k8s-staging-cri-tools/"
	want := []string{
		e2e + "busybox:1.29-2", e2e + "nginx:1.14-2", e2e + "httpd:2.4.39-4", e2e + "nonewprivs:1.3",
		"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9",
		tools + "hostnet-nginx-" + runtime.GOARCH,
		tools + "test-image-user-uid", tools + "test-image-user-username", tools + "test-image-user-uid-group",
		tools + "test-image-user-username-group", tools + "test-image-predefined-group",
		tools + "test-image-1:latest", tools + "test-image-2:latest", tools + "test-image-3:latest",
		tools + "test-image-latest:latest", tools + "test-image-tags:1", tools + "test-image-tags:2",
		tools + "test-image-tags:3", tools + "test-image-tag:test", tools + "test-image-tag:all",
	}
	for _, r := range want {
		if _, ok := imgs[r]; !ok {
			t.Errorf("%s not built", r)
		}
	}
	if len(imgs) != len(want) {
		t.Errorf("%d references built, want %d", len(imgs), len(want))
	}
	digest := func(ref string) string {
		d, err := imgs[ref].Image.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	if digest("registry.k8s.io/pause:3.9") != digest("k8s.gcr.io/pause:3.9") || digest(tools+"test-image-tags:1") != digest(tools+"test-image-tags:3") {
		t.Error("the references critest wants to be one image are not")
	}
	seen := map[string]string{}
	for _, r := range []string{tools + "test-image-1:latest", tools + "test-image-2:latest", tools + "test-image-3:latest", tools + "test-image-latest:latest", tools + "test-image-tag:test", tools + "test-image-tag:all"} {
		if o, dup := seen[digest(r)]; dup {
			t.Errorf("%s and %s are one image; critest wants them different", o, r)
		}
		seen[digest(r)] = r
	}

	// Users of the image configs (ImageStatus' uid and username).
	for ref, user := range map[string]string{
		tools + "test-image-user-uid": "1002", tools + "test-image-user-username": "www-data",
		tools + "test-image-user-uid-group": "1003:1004", tools + "test-image-user-username-group": "www-data:1004",
		tools + "test-image-predefined-group": "1000", "registry.k8s.io/pause:3.9": "65535:65535",
	} {
		cf, err := imgs[ref].Image.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Config.User != user {
			t.Errorf("%s: user %q, want %q", ref, cf.Config.User, user)
		}
	}

	// The default image: dynamic busybox, applets as hard links carrying
	// busybox's mode, the libraries, the stand-ins.
	bb := flat(t, imgs[e2e+"busybox:1.29-2"])
	for _, a := range []string{"ls", "sh", "pidof", "brctl", "netstat", "ping", "top", "id", "hostname"} {
		e, ok := bb["bin/"+a]
		if !ok || e.hdr.Typeflag != tar.TypeLink || e.hdr.Linkname != "bin/busybox" || e.hdr.Mode != 0o755 {
			t.Errorf("bin/%s: %+v, want a hard link to bin/busybox, mode 0755", a, e.hdr)
		}
	}
	libs, err := sharedLibraries(DynamicBusybox)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range libs {
		if _, ok := bb[strings.TrimPrefix(l, "/")]; !ok {
			t.Errorf("%s, which busybox needs, is not in the image", l)
		}
	}
	for _, p := range []string{"usr/bin/pgrep", "usr/bin/ipcs", "var/run", "tmp"} {
		if _, ok := bb[p]; !ok {
			t.Errorf("%s missing", p)
		}
	}
	if e := bb["tmp"]; e.hdr != nil && e.hdr.Mode != 0o1777 {
		t.Errorf("/tmp mode %o", e.hdr.Mode)
	}

	nnp := flat(t, imgs[e2e+"nonewprivs:1.3"])
	if e, ok := nnp["usr/local/bin/nnp"]; !ok || e.hdr.Mode != 0o4755 || e.hdr.Uid != 0 {
		t.Errorf("nnp: %+v, want setuid root", e.hdr)
	}
	for ref, file := range map[string]string{e2e + "nginx:1.14-2": "usr/sbin/nginx", tools + "hostnet-nginx-" + runtime.GOARCH: "usr/sbin/nginx", e2e + "httpd:2.4.39-4": "usr/local/bin/httpd-foreground"} {
		if e, ok := flat(t, imgs[ref])[file]; !ok || e.hdr.Typeflag != tar.TypeReg || e.hdr.Mode != 0o755 {
			t.Errorf("%s: /%s: %+v, want an executable file", ref, file, e.hdr)
		}
	}
}

func TestCRIImagesRefusesStaticBusybox(t *testing.T) {
	testenv.RequireFile(t, HostBusybox, "apt-get install busybox-static")
	la := filepath.Join(t.TempDir(), "la")
	if err := os.WriteFile(la, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := CRIImages(CRIOptions{Busybox: HostBusybox, Lookalike: la})
	if err == nil || !strings.Contains(err.Error(), "statically linked") {
		t.Fatalf("CRIImages with the static busybox: %v, want a refusal naming it", err)
	}
}
