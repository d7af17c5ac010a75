package fetch_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/karman-project/karman/image/fetch"
	"github.com/karman-project/karman/signing"
	"github.com/karman-project/karman/signing/cosign"
	"github.com/karman-project/karman/tests/testimage"
	"github.com/karman-project/karman/tests/testregistry"
)

func signingKey(t *testing.T) (*ecdsa.PrivateKey, signing.Key) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	k, err := signing.ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	return priv, k
}

// TestVerifySeesTheIndex checks that for an index the verifier judges the
// index's digest, and that nothing else, not even the platform's
// manifest, is requested before it approves.
func TestVerifySeesTheIndex(t *testing.T) {
	amd := testimage.Must(t)(testimage.Busybox(testimage.Options{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}))
	arm := testimage.Must(t)(testimage.Busybox(testimage.Options{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}))
	idx, err := testimage.Index(arm, amd)
	if err != nil {
		t.Fatal(err)
	}
	reg := newFakeRegistry(t)
	idxDigest, err := testregistry.PushIndex(context.Background(), reg.host+"/test/multiarch:latest", idx)
	if err != nil {
		t.Fatal(err)
	}
	amdDigest, _ := amd.Digest()
	var mu sync.Mutex
	var requests []string
	reg.middleware = func(_ http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		requests = append(requests, r.Method+" "+r.URL.Path)
		mu.Unlock()
		return false
	}
	p := v1.Platform{OS: "linux", Architecture: "amd64"}
	refused := errors.New("refused by test policy")
	var seen fetch.Target
	st := openStore(t)
	_, err = fetch.Fetch(context.Background(), mustRef(t, reg.host+"/test/multiarch:latest"), fetch.Options{Store: st, Platform: &p, Verify: func(_ context.Context, tg fetch.Target) error {
		seen = tg
		return refused
	}})
	if !errors.Is(err, refused) {
		t.Fatalf("got %v, want the refusal", err)
	}
	if seen.Digest != idxDigest || seen.MediaType != types.OCIImageIndex || seen.Signatures == nil || seen.Scope != reg.host+"/test/multiarch" {
		t.Errorf("verifier saw %s (%s) in scope %s, want the index %s", seen.Digest, seen.MediaType, seen.Scope, idxDigest)
	}
	for _, r := range requests {
		if strings.Contains(r, amdDigest.String()) || strings.Contains(r, "/blobs/") {
			t.Errorf("requested before verification: %s", r)
		}
	}
	assertNothingCommitted(t, st)

	// Approved: the platform's manifest is picked from the verified index.
	got, err := fetch.Fetch(context.Background(), mustRef(t, reg.host+"/test/multiarch:latest"), fetch.Options{Store: st, Platform: &p, Verify: func(context.Context, fetch.Target) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != amdDigest.String() {
		t.Errorf("fetched %s, want %s", got.Digest, amdDigest)
	}
	// Check resolves and verifies only.
	before := len(requests)
	var checked v1.Hash
	if err := fetch.Check(context.Background(), mustRef(t, reg.host+"/test/multiarch:latest"), fetch.Options{Verify: func(_ context.Context, tg fetch.Target) error {
		checked = tg.Digest
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if checked != idxDigest {
		t.Errorf("Check verified %s, want %s", checked, idxDigest)
	}
	for _, r := range requests[before:] {
		if strings.Contains(r, amdDigest.String()) || strings.Contains(r, "/blobs/") {
			t.Errorf("Check requested %s", r)
		}
	}
}

// TestSignatureSources checks the Source each transport hands the verifier:
// the registry repository, the OCI layout (tags and subjects of
// index.json), none for a docker archive.
func TestSignatureSources(t *testing.T) {
	ctx := context.Background()
	priv, key := signingKey(t)
	img := testimage.Must(t)(testimage.Busybox(testimage.Options{}))
	d, _ := img.Digest()
	mt, _ := img.MediaType()
	raw, _ := img.RawManifest()
	desc := v1.Descriptor{MediaType: mt, Digest: d, Size: int64(len(raw))}

	verify := func(want int) func(ctx context.Context, tg fetch.Target) error {
		return func(ctx context.Context, tg fetch.Target) error {
			if tg.Signatures == nil {
				return errors.New("no signature source")
			}
			res, err := cosign.Verify(ctx, tg.Signatures, tg.Digest, []signing.Key{key})
			if err != nil {
				return err
			}
			ok := 0
			for _, s := range res.Signatures {
				if s.Err == nil && s.KeyID == key.ID {
					ok++
				} else {
					t.Errorf("%s at %s: %v", s.Format, s.Location, s.Err)
				}
			}
			if ok != want {
				t.Errorf("%d verified signatures, want %d", ok, want)
			}
			return nil
		}
	}

	t.Run("registry", func(t *testing.T) {
		reg := newFakeRegistry(t)
		push(t, reg.host+"/test/signed:v1", img)
		repo, _ := name.NewRepository(reg.host + "/test/signed")
		if err := cosign.PushSimple(ctx, repo, d, priv); err != nil {
			t.Fatal(err)
		}
		if err := cosign.PushBundle(ctx, repo, desc, priv); err != nil {
			t.Fatal(err)
		}
		if _, err := fetch.Fetch(ctx, mustRef(t, reg.host+"/test/signed:v1"), fetch.Options{Store: openStore(t), Verify: verify(2)}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("layout", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "layout")
		if _, err := testimage.WriteLayout(dir, "v1", img); err != nil {
			t.Fatal(err)
		}
		lp, err := layout.FromPath(dir)
		if err != nil {
			t.Fatal(err)
		}
		sig, tag, err := cosign.SignSimple(d, "example.test/signed", priv, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := lp.AppendImage(sig, layout.WithAnnotations(map[string]string{testimage.RefNameAnnotation: tag})); err != nil {
			t.Fatal(err)
		}
		bundle, err := cosign.SignBundle(desc, priv)
		if err != nil {
			t.Fatal(err)
		}
		if err := lp.AppendImage(bundle); err != nil {
			t.Fatal(err)
		}
		// With or without a tag: the signatures are not images to pick.
		for _, ref := range []string{"oci:" + dir + ":v1", "oci:" + dir} {
			got, err := fetch.Fetch(ctx, mustRef(t, ref), fetch.Options{Store: openStore(t), Verify: verify(2)})
			if err != nil {
				t.Fatalf("%s: %v", ref, err)
			}
			if got.Digest != d.String() {
				t.Errorf("%s: fetched %s, want %s", ref, got.Digest, d)
			}
		}
		// A payload whose blob was altered no longer verifies.
		m, _ := sig.Manifest()
		p := filepath.Join(dir, "blobs/sha256", m.Layers[0].Digest.Hex)
		os.Chmod(p, 0o644)
		if err := os.WriteFile(p, []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
		var bad int
		fetch.Check(ctx, mustRef(t, "oci:"+dir+":v1"), fetch.Options{Verify: func(ctx context.Context, tg fetch.Target) error {
			res, _ := cosign.Verify(ctx, tg.Signatures, tg.Digest, []signing.Key{key})
			for _, s := range res.Signatures {
				if s.Err != nil {
					bad++
				}
			}
			return nil
		}})
		if bad != 1 {
			t.Errorf("%d failed signatures after tampering, want 1", bad)
		}
	})

	t.Run("archive", func(t *testing.T) {
		archive := filepath.Join(t.TempDir(), "img.tar")
		if err := testimage.WriteDockerArchive(archive, "example.test/archive:v1", img); err != nil {
			t.Fatal(err)
		}
		var seen fetch.Target
		if err := fetch.Check(ctx, mustRef(t, "docker-archive:"+archive), fetch.Options{Verify: func(_ context.Context, tg fetch.Target) error {
			seen = tg
			return nil
		}}); err != nil {
			t.Fatal(err)
		}
		if seen.Signatures != nil || seen.Scope != "docker-archive:"+archive {
			t.Errorf("archive target: scope %s, signatures %v", seen.Scope, seen.Signatures)
		}
	})
}
