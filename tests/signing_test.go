package tests

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/karman-project/karman/signing/cosign"
	"github.com/karman-project/karman/signing/policy"
	"github.com/karman-project/karman/tests/testenv"
	"github.com/karman-project/karman/tests/testimage"
	"github.com/karman-project/karman/tests/testregistry"
)

// sigEnv is a loopback registry and a configuration directory whose
// policy the test writes with `karman trust`.
type sigEnv struct {
	host string
	etc  string
}

func newSigEnv(t *testing.T) *sigEnv {
	t.Helper()
	return &sigEnv{host: testregistry.Distribution(t), etc: filepath.Join(t.TempDir(), "etc")}
}

// in runs karman with data directory dir and the env's configuration.
func (e *sigEnv) in(t *testing.T, dir string, args ...string) testenv.Result {
	t.Helper()
	return testenv.Run(t, nil, append([]string{"--dir", dir, "--config-dir", e.etc}, noNet(args)...)...)
}

// trust runs `karman trust ARGS` and requires success.
func (e *sigEnv) trust(t *testing.T, args ...string) testenv.Result {
	t.Helper()
	return mustSucceed(t, e.in(t, t.TempDir(), append([]string{"trust"}, args...)...))
}

type testKey struct {
	priv *ecdsa.PrivateKey
	pub  string // path of the PEM public key, as cosign.pub
	id   string
}

func newTestKey(t *testing.T) testKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "cosign.pub")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return testKey{priv: priv, pub: p, id: hex.EncodeToString(sum[:])}
}

// pushImage pushes a busybox image (multilayer when other) to ref.
func pushImage(t *testing.T, ref string, other bool) (v1.Image, v1.Hash) {
	t.Helper()
	build := testimage.Busybox
	if other {
		build = testimage.MultiLayer
	}
	img := testimage.Must(t)(build(testimage.Options{}))
	d, err := testregistry.Push(context.Background(), ref, img)
	if err != nil {
		t.Fatal(err)
	}
	return img, d
}

func repoOf(t *testing.T, ref string) name.Repository {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	return r.Context()
}

func signSimple(t *testing.T, ref string, d v1.Hash, k testKey) {
	t.Helper()
	if err := cosign.PushSimple(context.Background(), repoOf(t, ref), d, k.priv); err != nil {
		t.Fatal(err)
	}
}

func describe(t *testing.T, m interface {
	RawManifest() ([]byte, error)
	MediaType() (types.MediaType, error)
}) v1.Descriptor {
	t.Helper()
	raw, err := m.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := m.MediaType()
	d, _, _ := v1.SHA256(strings.NewReader(string(raw)))
	return v1.Descriptor{MediaType: mt, Digest: d, Size: int64(len(raw))}
}

func signBundle(t *testing.T, ref string, desc v1.Descriptor, k testKey) {
	t.Helper()
	if err := cosign.PushBundle(context.Background(), repoOf(t, ref), desc, k.priv); err != nil {
		t.Fatal(err)
	}
}

// pushSigManifest pushes, as the .sig of d, one simple-signing layer with
// the given payload and base64 signature.
func pushSigManifest(t *testing.T, ref string, d v1.Hash, payload []byte, sig string) {
	t.Helper()
	base := mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:       static.NewLayer(payload, cosign.SimpleSigningMediaType),
		MediaType:   cosign.SimpleSigningMediaType,
		Annotations: map[string]string{cosign.SignatureAnnotation: sig},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(repoOf(t, ref).Tag(cosign.SigTag(d)), img); err != nil {
		t.Fatal(err)
	}
}

// simpleSignature returns a genuine payload and signature of d by k.
func simpleSignature(t *testing.T, ref string, d v1.Hash, k testKey) ([]byte, string) {
	t.Helper()
	img, _, err := cosign.SignSimple(d, repoOf(t, ref).Name(), k.priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	l, err := img.LayerByDigest(m.Layers[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := l.Compressed()
	defer rc.Close()
	payload, _ := io.ReadAll(rc)
	return payload, m.Layers[0].Annotations[cosign.SignatureAnnotation]
}

// assertNothingStored checks that nothing of a refused image reached the
// store: no blob, no extracted layer, no name, nothing in tmp/, no pod.
func assertNothingStored(t *testing.T, dir string) {
	t.Helper()
	for _, d := range []string{"images/blobs/sha256", "images/layers/sha256", "images/tmp", "pods/embryo", "pods/prepared", "pods/run"} {
		if ents, _ := os.ReadDir(filepath.Join(dir, d)); len(ents) != 0 {
			t.Errorf("%s holds %d entries after a refusal", d, len(ents))
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "images/refs.json")); err == nil && strings.Contains(string(b), "sha256:") {
		t.Errorf("refs.json names an image after a refusal: %s", b)
	}
}

// assertRefused checks a refusal: exit 254, one line on stderr saying
// each of wants, and nothing stored.
func assertRefused(t *testing.T, r testenv.Result, dir string, wants ...string) {
	t.Helper()
	if r.Code != 254 {
		t.Fatalf("exit %d, want 254 (refused)\n%s", r.Code, r)
	}
	line := strings.TrimSpace(r.Stderr)
	if strings.Contains(line, "\n") || !strings.HasPrefix(line, "karman: ") {
		t.Errorf("refusal is not one line:\n%s", r.Stderr)
	}
	for _, w := range wants {
		if !strings.Contains(line, w) {
			t.Errorf("refusal %q does not say %q", line, w)
		}
	}
	assertNothingStored(t, dir)
}

func TestSigningNoPolicyRefusesWithHint(t *testing.T) {
	e := newSigEnv(t)
	ref := e.host + "/sig/nopolicy:1"
	_, d := pushImage(t, ref, false)
	dir := t.TempDir()
	assertRefused(t, e.in(t, dir, "fetch", ref), dir,
		ref+" ("+d.String()+") refused", "policy.json does not exist",
		`"karman trust add --scope `+e.host+`/sig/nopolicy KEY.pub"`, "--insecure-options=image")
	r := mustSucceed(t, e.in(t, dir, "trust", "list"))
	if !strings.Contains(r.Stdout, "does not exist") {
		t.Errorf("trust list without a policy: %q", r.Stdout)
	}
}

func TestTrustAddListRm(t *testing.T) {
	e := &sigEnv{etc: filepath.Join(t.TempDir(), "etc")}
	a, b := newTestKey(t), newTestKey(t)
	r := e.trust(t, "add", "--scope", "127.0.0.1:5000/team", a.pub)
	if !strings.Contains(r.Stdout, a.id) || !strings.Contains(r.Stdout, "ECDSA P-256") || !strings.Contains(r.Stdout, "created") {
		t.Errorf("trust add said %q; want the fingerprint %s, the key type and the new policy", r.Stdout, a.id)
	}
	e.trust(t, "add", "--scope", "127.0.0.1:5000/team", b.pub)
	layoutDir := t.TempDir()
	e.trust(t, "add", "--scope", "oci:"+layoutDir, "--type", "insecure-accept-anything")

	r = e.trust(t, "list")
	for _, w := range []string{"127.0.0.1:5000/team", "signed", a.id[:12] + "," + b.id[:12], "oci:" + layoutDir, "insecure-accept-anything", "(default)", "reject", a.id} {
		if !strings.Contains(r.Stdout, w) {
			t.Errorf("trust list lacks %q:\n%s", w, r.Stdout)
		}
	}
	var l struct {
		Exists  bool
		Default policy.Requirement
		Scopes  []policy.Scope
		Keys    []struct {
			ID, Type string
			Scopes   []string
		}
	}
	r = e.trust(t, "list", "--format", "json")
	if err := json.Unmarshal([]byte(r.Stdout), &l); err != nil {
		t.Fatalf("trust list --format json: %v\n%s", err, r.Stdout)
	}
	if !l.Exists || l.Default.Type != policy.Reject || len(l.Scopes) != 2 || len(l.Scopes[0].Requirement.Keys) != 2 || len(l.Keys) != 2 || l.Keys[0].Type != "ECDSA P-256" {
		t.Errorf("trust list json = %+v", l)
	}

	// rm by prefix, then the last key: the scope rejects, never weaker.
	r = e.trust(t, "rm", a.id[:8])
	if !strings.Contains(r.Stdout, "removed key "+a.id) {
		t.Errorf("trust rm said %q", r.Stdout)
	}
	r = e.trust(t, "rm", b.id)
	if !strings.Contains(r.Stdout, "rejects every image") {
		t.Errorf("trust rm of the last key said %q", r.Stdout)
	}
	e.trust(t, "rm", "--scope", "127.0.0.1:5000/team")
	r = e.trust(t, "list", "--format", "json")
	l.Scopes, l.Keys = nil, nil
	json.Unmarshal([]byte(r.Stdout), &l)
	if len(l.Scopes) != 1 || l.Scopes[0].Name != "oci:"+layoutDir || len(l.Keys) != 0 {
		t.Errorf("after rm: %s", r.Stdout)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.etc, "keys")); len(ents) != 0 {
		t.Errorf("%d key files left", len(ents))
	}

	// Bad keys, scopes and policies get clear errors.
	priv := newTestKey(t)
	der, _ := x509.MarshalPKCS8PrivateKey(priv.priv)
	privFile := filepath.Join(t.TempDir(), "cosign.key")
	os.WriteFile(privFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"trust", "add", "--scope", "127.0.0.1:5000/team", privFile}, "invalid public key"},
		{[]string{"trust", "add", a.pub}, "--scope is required"},
		{[]string{"trust", "add", "--scope", "team/app", a.pub}, "names no registry host"},
		{[]string{"trust", "add", "--scope", "127.0.0.1:5000/team:1", a.pub}, "not tags"},
		{[]string{"trust", "rm", "ffffff"}, "no trusted key"},
	} {
		r := e.in(t, dir, tc.args...)
		if r.Code != 254 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("%v: want exit 254 saying %q\n%s", tc.args, tc.want, r)
		}
	}
	os.WriteFile(filepath.Join(e.etc, "policy.json"), []byte("{\n  \"version\": 1,\n  \"scope\": {}\n}\n"), 0o644)
	r = e.in(t, dir, "trust", "list")
	if r.Code != 254 || !strings.Contains(r.Stderr, `policy.json:3:3: unknown field "scope"`) {
		t.Errorf("broken policy: %s", r)
	}
	os.WriteFile(filepath.Join(e.etc, "policy.json"), []byte(`{"version": 2}`), 0o644)
	if _, err := testimage.WriteLayout(layoutDir, "v1", testimage.Must(t)(testimage.Busybox(testimage.Options{}))); err != nil {
		t.Fatal(err)
	}
	if r := e.in(t, dir, "fetch", "oci:"+layoutDir+":v1"); r.Code != 254 || !strings.Contains(r.Stderr, "version 2 is not supported") {
		t.Errorf("policy version 2: %s", r)
	}
}

func TestSignedImageRuns(t *testing.T) {
	testenv.RequireRoot(t, "pods need namespaces and mounts")
	e := newSigEnv(t)
	k := newTestKey(t)
	e.trust(t, "add", "--scope", e.host+"/sig/team", k.pub)

	simple := e.host + "/sig/team/simple:1"
	_, ds := pushImage(t, simple, false)
	signSimple(t, simple, ds, k)
	bundled := e.host + "/sig/team/bundle:1"
	img, db := pushImage(t, bundled, false)
	signBundle(t, bundled, describe(t, img), k)

	for _, ref := range []string{simple, bundled} {
		dir := t.TempDir()
		r := e.in(t, dir, "run", ref, "--exec", "/bin/sh", "--", "-c", "exit 7")
		if r.Code != 7 {
			t.Errorf("run %s: exit %d, want the app's 7\n%s", ref, r.Code, r)
		}
		mustSucceed(t, e.in(t, dir, "gc", "--grace-period=0"))
	}
	r := mustSucceed(t, e.in(t, t.TempDir(), "verify", bundled))
	for _, w := range []string{"accepted", db.String(), "scope " + e.host + "/sig/team", cosign.FormatBundle, "verified by trusted key " + k.id[:12]} {
		if !strings.Contains(r.Stdout, w) {
			t.Errorf("verify lacks %q:\n%s", w, r.Stdout)
		}
	}
}

func TestSigningRefusals(t *testing.T) {
	e := newSigEnv(t)
	trusted, other := newTestKey(t), newTestKey(t)
	e.trust(t, "add", "--scope", e.host+"/sig/team", trusted.pub)
	scopeSays := "scope " + e.host + "/sig/team requires a signature by one of 1 key (" + trusted.id[:12] + ")"
	fix := `"karman trust add --scope ` + e.host + `/sig/team KEY.pub"`

	tests := []struct {
		name  string
		setup func(t *testing.T, ref string, d v1.Hash)
		wants []string
	}{
		{"unsigned", func(*testing.T, string, v1.Hash) {}, []string{"found no signature", "cosign sign --key"}},
		{"wrong key", func(t *testing.T, ref string, d v1.Hash) { signSimple(t, ref, d, other) },
			[]string{"found 1 signature, none by a trusted key (simple-signing:", fix}},
		{"wrong key, bundle", func(t *testing.T, ref string, d v1.Hash) {
			img, _ := remote.Image(repoOf(t, ref).Digest(d.String()))
			signBundle(t, ref, describe(t, img), other)
		}, []string{"found 1 signature, none by a trusted key (sigstore-bundle:"}},
		{"tampered payload", func(t *testing.T, ref string, d v1.Hash) {
			payload, sig := simpleSignature(t, ref, d, trusted)
			tampered := strings.Replace(string(payload), `"docker-reference":"`, `"docker-reference":"x`, 1)
			pushSigManifest(t, ref, d, []byte(tampered), sig)
		}, []string{"none by a trusted key (simple-signing:"}},
		{"payload for another digest", func(t *testing.T, ref string, d v1.Hash) {
			_, otherDigest := pushImage(t, e.host+"/sig/team/other:1", true)
			payload, sig := simpleSignature(t, ref, otherDigest, trusted)
			pushSigManifest(t, ref, d, payload, sig)
		}, []string{"none by a trusted key (simple-signing:", "the payload is for"}},
		{"malformed signature", func(t *testing.T, ref string, d v1.Hash) {
			payload, _ := simpleSignature(t, ref, d, trusted)
			pushSigManifest(t, ref, d, payload, "not base64!")
		}, []string{"none by a trusted key (simple-signing:", "malformed"}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ref := e.host + "/sig/team/app" + string(rune('a'+i)) + ":1"
			_, d := pushImage(t, ref, false)
			tc.setup(t, ref, d)
			dir := t.TempDir()
			wants := append([]string{ref + " (" + d.String() + ") refused", scopeSays, "--insecure-options=image"}, tc.wants...)
			assertRefused(t, e.in(t, dir, "fetch", ref), dir, wants...)
			// verify explains the same decision and fetches nothing.
			r := e.in(t, dir, "verify", ref)
			if r.Code != 254 || !strings.Contains(r.Stdout, "refused") || !strings.Contains(r.Stdout, d.String()) {
				t.Errorf("verify of a refused image:\n%s", r)
			}
			assertNothingStored(t, dir)
		})
	}

	t.Run("run refused", func(t *testing.T) {
		testenv.RequireRoot(t, "run needs root")
		ref := e.host + "/sig/team/unsigned-run:1"
		pushImage(t, ref, false)
		dir := t.TempDir()
		assertRefused(t, e.in(t, dir, "run", ref, "--exec", "/bin/true"), dir, "found no signature")
	})

	// A re-fetch expects the stored digest and starts reading its .sig tag
	// before the registry names the digest (cosign.Prefetch): when the tag
	// has moved to an unsigned image, that signature must not vouch for it.
	// fetched pushes an image signed by the trusted key as ref and
	// fetches it into a new data directory.
	fetched := func(t *testing.T, ref string) (d v1.Hash, dir string) {
		_, d = pushImage(t, ref, false)
		signSimple(t, ref, d, trusted)
		dir = t.TempDir()
		mustSucceed(t, e.in(t, dir, "fetch", ref))
		return d, dir
	}
	t.Run("tag moved to an unsigned image", func(t *testing.T) {
		ref := e.host + "/sig/team/moved:1"
		d, dir := fetched(t, ref)
		_, moved := pushImage(t, ref, true)
		r := e.in(t, dir, "fetch", ref)
		if r.Code != 254 || !strings.Contains(r.Stderr, ref+" ("+moved.String()+") refused") || !strings.Contains(r.Stderr, "found no signature") {
			t.Fatalf("re-fetch after the tag moved to unsigned %s:\n%s", moved, r)
		}
		if _, err := os.Stat(filepath.Join(dir, "images/blobs", moved.Algorithm, moved.Hex)); !os.IsNotExist(err) {
			t.Errorf("the refused manifest %s was stored (stat: %v)", moved, err)
		}
		refs, _ := os.ReadFile(filepath.Join(dir, "images/refs.json"))
		if !strings.Contains(string(refs), d.String()) || strings.Contains(string(refs), moved.String()) {
			t.Errorf("refs.json after the refusal: %s", refs)
		}
	})

	t.Run("revoked key", func(t *testing.T) {
		ref := e.host + "/sig/team/revoked:1"
		fetched(t, ref)
		e.trust(t, "rm", trusted.id)
		defer e.trust(t, "add", "--scope", e.host+"/sig/team", trusted.pub)
		dir := t.TempDir()
		assertRefused(t, e.in(t, dir, "fetch", ref), dir, "scope "+e.host+"/sig/team rejects every image")
	})
}

func TestSigningScopePrecedence(t *testing.T) {
	e := newSigEnv(t)
	ref := func(repo string) string {
		r := e.host + "/" + repo + ":1"
		pushImage(t, r, false)
		return r
	}
	// A narrower reject inside a broader insecure-accept-anything...
	e.trust(t, "add", "--type", "insecure-accept-anything", "--scope", e.host+"/open")
	e.trust(t, "add", "--type", "reject", "--scope", e.host+"/open/locked")
	// ...and a narrower insecure-accept-anything inside a broader reject.
	e.trust(t, "add", "--type", "reject", "--scope", e.host+"/closed")
	e.trust(t, "add", "--type", "insecure-accept-anything", "--scope", e.host+"/closed/ajar")

	for _, tc := range []struct {
		repo   string
		accept bool
		want   string
	}{
		{"open/app", true, ""},
		{"open/lockedx/app", true, ""},
		{"open/locked/app", false, "scope " + e.host + "/open/locked rejects every image"},
		{"closed/app", false, "scope " + e.host + "/closed rejects every image"},
		{"closed/ajar/app", true, ""},
		{"closed/ajarx", false, "scope " + e.host + "/closed rejects"},
		{"elsewhere/app", false, "the default rejects every image"},
	} {
		r := ref(tc.repo)
		dir := t.TempDir()
		res := e.in(t, dir, "fetch", r)
		if tc.accept {
			mustSucceed(t, res)
			continue
		}
		assertRefused(t, res, dir, tc.want)
	}
}

func TestSigningInsecureOptionWarns(t *testing.T) {
	e := newSigEnv(t)
	ref := e.host + "/sig/insecure:1"
	_, d := pushImage(t, ref, false)
	dir := t.TempDir()
	r := mustSucceed(t, e.in(t, dir, "fetch", "--insecure-options=image", ref))
	if strings.TrimSpace(r.Stdout) != d.String() || !strings.Contains(r.Stderr, "karman: WARNING: signature verification skipped for "+ref) {
		t.Errorf("fetch --insecure-options=image:\n%s", r)
	}
	if os.Geteuid() == 0 {
		dir := t.TempDir()
		r := e.in(t, dir, "run", "--insecure-options=image", ref, "--exec", "/bin/sh", "--", "-c", "exit 3")
		if r.Code != 3 || !strings.Contains(r.Stderr, "WARNING: signature verification skipped") {
			t.Errorf("run --insecure-options=image:\n%s", r)
		}
		mustSucceed(t, e.in(t, dir, "gc", "--grace-period=0"))
	}
	// Only for that command.
	dir = t.TempDir()
	assertRefused(t, e.in(t, dir, "fetch", ref), dir, "refused")
}

func TestSigningIndexLayoutArchive(t *testing.T) {
	e := newSigEnv(t)
	k := newTestKey(t)
	e.trust(t, "add", "--scope", e.host+"/sig/multi", k.pub)

	// An index: the signature is on the index digest, the platform's
	// manifest is picked from the verified index.
	host := testimage.Must(t)(testimage.Busybox(testimage.Options{}))
	foreign := testimage.Must(t)(testimage.Busybox(testimage.Options{Platform: &v1.Platform{OS: "linux", Architecture: "s390x"}}))
	idx, err := testimage.Index(foreign, host)
	if err != nil {
		t.Fatal(err)
	}
	signed := e.host + "/sig/multi/signed:1"
	idxDigest, err := testregistry.PushIndex(context.Background(), signed, idx)
	if err != nil {
		t.Fatal(err)
	}
	signSimple(t, signed, idxDigest, k)
	hostDigest, _ := host.Digest()
	r := mustSucceed(t, e.in(t, t.TempDir(), "fetch", signed))
	if strings.TrimSpace(r.Stdout) != hostDigest.String() {
		t.Errorf("fetch of a signed index printed %q, want the platform manifest %s", r.Stdout, hostDigest)
	}
	r = mustSucceed(t, e.in(t, t.TempDir(), "verify", "--format", "json", signed))
	var dec policy.Decision
	if err := json.Unmarshal([]byte(r.Stdout), &dec); err != nil || !dec.Accepted || dec.Digest != idxDigest.String() {
		t.Errorf("verify json of an index: %v\n%s", err, r.Stdout)
	}
	// Signing only the platform's manifest does not sign what the user named.
	manifestOnly := e.host + "/sig/multi/manifest-only:1"
	if _, err := testregistry.PushIndex(context.Background(), manifestOnly, idx); err != nil {
		t.Fatal(err)
	}
	signSimple(t, manifestOnly, hostDigest, k)
	dir := t.TempDir()
	assertRefused(t, e.in(t, dir, "fetch", manifestOnly), dir, idxDigest.String(), "found no signature")

	// An OCI layout holding its signatures.
	img := testimage.Must(t)(testimage.MultiLayer(testimage.Options{}))
	d, _ := img.Digest()
	lay := filepath.Join(t.TempDir(), "layout")
	if _, err := testimage.WriteLayout(lay, "v1", img); err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	assertRefused(t, e.in(t, dir, "fetch", "oci:"+lay+":v1"), dir, "no scope of", "--scope oci:"+lay+" KEY.pub")
	e.trust(t, "add", "--scope", "oci:"+filepath.Dir(lay), k.pub)
	assertRefused(t, e.in(t, dir, "fetch", "oci:"+lay+":v1"), dir, "found no signature")
	lp, err := layout.FromPath(lay)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := cosign.SignBundle(describe(t, img), k.priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(bundle); err != nil {
		t.Fatal(err)
	}
	r = mustSucceed(t, e.in(t, t.TempDir(), "fetch", "oci:"+lay+":v1"))
	if strings.TrimSpace(r.Stdout) != d.String() {
		t.Errorf("fetch of a signed layout printed %q, want %s", r.Stdout, d)
	}

	// A docker archive has no signatures: only insecure-accept-anything
	// takes it.
	archive := filepath.Join(t.TempDir(), "img.tar")
	if err := testimage.WriteDockerArchive(archive, "example.test/archive:v1", img); err != nil {
		t.Fatal(err)
	}
	e.trust(t, "add", "--scope", "docker-archive:"+filepath.Dir(archive), k.pub)
	dir = t.TempDir()
	assertRefused(t, e.in(t, dir, "fetch", "docker-archive:"+archive), dir, "a docker archive carries no signatures", "--type insecure-accept-anything --scope docker-archive:"+archive)
	e.trust(t, "add", "--type", "insecure-accept-anything", "--scope", "docker-archive:"+archive)
	mustSucceed(t, e.in(t, t.TempDir(), "fetch", "docker-archive:"+archive))
}
