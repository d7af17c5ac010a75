package tests

import (
	"archive/tar"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/karman-project/karman/tests/testenv"
	"github.com/karman-project/karman/tests/testimage"
)

// probeImage is busybox plus testdata/syscallprobe built for x86-64
// (/probe64) and for i386 (/probe32).
func probeImage(t *testing.T) string {
	t.Helper()
	root, err := testenv.ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, arch := range map[string]string{"probe64": "amd64", "probe32": "386"} {
		out := filepath.Join(t.TempDir(), name)
		cmd := exec.Command(goTool, "build", "-o", out, "./tests/testdata/syscallprobe")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH="+arch)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building the probe for %s: %v\n%s", arch, err, b)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	tw.Close()
	base := testimage.Must(t)(testimage.Busybox(testimage.Options{}))
	img, err := mutate.AppendLayers(base, static.NewLayer(buf.Bytes(), types.OCIUncompressedLayer))
	if err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(t.TempDir(), "layout")
	if _, err := testimage.WriteLayout(layout, "probe", img); err != nil {
		t.Fatal(err)
	}
	return "oci:" + layout + ":probe"
}

// TestDefaultSeccompFilter: the default filter refuses what the container
// default profile refuses, with EPERM, for 64-bit and 32-bit system calls,
// and leaves the rest alone.
func TestDefaultSeccompFilter(t *testing.T) {
	e := newPodEnv(t)
	probe := probeImage(t)
	mustSucceed(t, karman(t, e.dir, "fetch", probe))
	for _, bin := range []string{"/probe64", "/probe32"} {
		r := mustSucceed(t, e.run(t, probe, "--exec", bin, "--", "getpid", "keyctl", "unshare", "settimeofday", "bpf", "ptrace"))
		for _, want := range []string{"getpid=0", "keyctl=1", "unshare=1", "settimeofday=1", "bpf=1", "ptrace=1"} {
			if !strings.Contains(r.Stdout, want+"\n") {
				t.Errorf("%s: %q lacks %q (errno 1 is EPERM)", bin, r.Stdout, want)
			}
		}
	}
	r := mustSucceed(t, e.run(t, probe, "--exec", "/bin/sh", "--", "-c", "grep -E '^Seccomp:' /proc/self/status"))
	if !strings.Contains(r.Stdout, "Seccomp:\t2") {
		t.Errorf("app not in seccomp filter mode: %q", r.Stdout)
	}
}
