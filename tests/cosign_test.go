package tests

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/signing/cosign"
	"github.com/karman-project/karman/tests/testenv"
	"github.com/karman-project/karman/tests/testimage"
	"github.com/karman-project/karman/tests/testregistry"
)

var hexRun = regexp.MustCompile(`[0-9a-f]{16,}`)

// cosignBinary finds the real cosign (installed by scripts/setup.sh with
// go install) or stops t (testenv.Missing).
func cosignBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("cosign"); err == nil {
		return p
	}
	home, _ := os.UserHomeDir()
	for _, p := range []string{filepath.Join(os.Getenv("GOBIN"), "cosign"), filepath.Join(os.Getenv("GOPATH"), "bin", "cosign"), filepath.Join(home, "go/bin/cosign")} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	testenv.Missing(t, "the real cosign binary (in $PATH, $GOBIN, $GOPATH/bin or ~/go/bin)", "scripts/setup.sh --tests builds it (go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5)")
	return ""
}

// runCosign runs cosign with a private HOME, no password, and returns its
// combined output and exit status.
func runCosign(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(cosignBinary(t), args...)
	cmd.Dir = dir
	// cosign must reach nothing but the loopback registry: a proxy that
	// does not exist catches any other address.
	cmd.Env = append(os.Environ(), "HOME="+dir, "COSIGN_PASSWORD=", "COSIGN_YES=true", "DOCKER_CONFIG="+dir,
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=127.0.0.1,localhost",
		"TUF_ROOT="+filepath.Join(dir, "tuf"), "SIGSTORE_NO_CACHE=true")
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		t.Fatalf("cosign %v: %v", args, err)
	}
	return string(out), 0
}

// TestCosignSignsKarmanVerifies: images signed by the real cosign, in both
// formats, are accepted by karman's policy with cosign's public key.
func TestCosignSignsKarmanVerifies(t *testing.T) {
	cosignBinary(t)
	host := testregistry.Distribution(t)
	keys := t.TempDir()
	if out, code := runCosign(t, keys, "generate-key-pair"); code != 0 {
		t.Fatalf("cosign generate-key-pair: %s", out)
	}
	for _, format := range []string{"simple-signing", "bundle"} {
		t.Run(format, func(t *testing.T) {
			ref := host + "/cosign/" + format + ":v1"
			d := pushed(t, ref, testimage.Options{}, testimage.Busybox)
			args := []string{"sign", "--key", "cosign.key", "--tlog-upload=false", "--allow-insecure-registry", "-y"}
			if format == "bundle" {
				args = append(args, "--new-bundle-format=true", "--use-signing-config=false")
			}
			if out, code := runCosign(t, keys, append(args, host+"/cosign/"+format+"@"+d)...); code != 0 {
				t.Fatalf("cosign sign: %s", out)
			}
			dir := t.TempDir()
			r := mustSucceed(t, karman(t, dir, "trust", "add", "--scope", host+"/cosign", filepath.Join(keys, "cosign.pub")))
			if !hexRun.MatchString(r.Stdout) {
				t.Errorf("trust add did not show the key's fingerprint: %q", r.Stdout)
			}
			r = karman(t, dir, "verify", ref)
			if r.Code != 0 {
				t.Fatalf("karman verify of a cosign-signed image:\n%s", r)
			}
			r = mustSucceed(t, karman(t, dir, "fetch", ref))
			if strings.TrimSpace(r.Stdout) != d {
				t.Errorf("fetch printed %q, want %s", r.Stdout, d)
			}
		})
	}
}

// TestKarmanSignsCosignVerifies: signatures made by karman's own signing
// code verify with `cosign verify --key ... --insecure-ignore-tlog`.
func TestKarmanSignsCosignVerifies(t *testing.T) {
	cosignBinary(t)
	host := testregistry.Distribution(t)
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	dir := t.TempDir()
	pub := filepath.Join(dir, "karman.pub")
	os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)

	for _, format := range []string{"simple-signing", "bundle"} {
		t.Run(format, func(t *testing.T) {
			ref := host + "/karman/" + format + ":v1"
			img := testimage.Must(t)(testimage.Busybox(testimage.Options{}))
			d, err := testregistry.Push(context.Background(), ref, img)
			if err != nil {
				t.Fatal(err)
			}
			repo, _ := name.NewRepository(host+"/karman/"+format, name.Insecure)
			mt, _ := img.MediaType()
			size, _ := img.Size()
			switch format {
			case "simple-signing":
				err = cosign.PushSimple(context.Background(), repo, d, priv)
			default:
				err = cosign.PushBundle(context.Background(), repo, v1.Descriptor{MediaType: mt, Digest: d, Size: size}, priv)
			}
			if err != nil {
				t.Fatal(err)
			}
			args := []string{"verify", "--key", pub, "--insecure-ignore-tlog", "--allow-insecure-registry"}
			if format == "bundle" {
				// An empty trusted root: key-based verification needs none,
				// and without one cosign would try to fetch it.
				root := filepath.Join(dir, "trusted_root.json")
				os.WriteFile(root, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o644)
				args = append(args, "--new-bundle-format", "--trusted-root", root)
			}
			out, code := runCosign(t, dir, append(args, host+"/karman/"+format+"@"+d.String())...)
			if code != 0 {
				t.Fatalf("cosign verify of a karman signature exited %d:\n%s", code, out)
			}
		})
	}
}
