package cosign

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestSimplePayloadBytes(t *testing.T) {
	e := newEnv(t, false)
	got, err := simplePayload("registry.example/team/app", e.d)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"critical":{"identity":{"docker-reference":"registry.example/team/app"},"image":{"docker-manifest-digest":"` +
		e.d.String() + `"},"type":"cosign container image signature"},"optional":null}`
	if string(got) != want {
		t.Errorf("payload\n got %s\nwant %s", got, want)
	}
	if d, err := parseSimplePayload(got); err != nil || d != e.d.String() {
		t.Errorf("parse = %q, %v", d, err)
	}
	// What cosign may also write: annotations in optional, no optional.
	for _, p := range []string{
		strings.Replace(want, `"optional":null`, `"optional":{"env":"prod","n":1}`, 1),
		strings.Replace(want, `,"optional":null`, ``, 1),
	} {
		if d, err := parseSimplePayload([]byte(p)); err != nil || d != e.d.String() {
			t.Errorf("parse(%s) = %q, %v", p, d, err)
		}
	}
}

func TestSimpleManifest(t *testing.T) {
	e := newEnv(t, false)
	k := newKey(t, "p256", 0)
	e.pushSimple(t, k)
	img, err := remote.Image(e.repo.Tag(SigTag(e.d)))
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON || len(m.Layers) != 1 {
		t.Fatalf("manifest %+v", m)
	}
	cfg, err := img.ConfigFile()
	if err != nil || len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != m.Layers[0].Digest {
		t.Errorf("config %+v, %v", cfg, err)
	}
	l := m.Layers[0]
	sig, err := base64.StdEncoding.DecodeString(l.Annotations[SignatureAnnotation])
	if l.MediaType != SimpleSigningMediaType || err != nil {
		t.Fatalf("layer %+v", l)
	}
	payload, _ := e.src.Blob(context.Background(), l.Digest, MaxPayloadSize)
	h := sha256.Sum256(payload)
	if !ecdsa.VerifyASN1(k.priv.Public().(*ecdsa.PublicKey), h[:], sig) {
		t.Error("the signature is not ECDSA over SHA-256 of the payload")
	}
	if want, _ := simplePayload(e.repo.Name(), e.d); string(payload) != string(want) {
		t.Errorf("payload %s", payload)
	}
}

func TestBundleBytes(t *testing.T) {
	apiModes(t, func(t *testing.T, api bool) {
		e := newEnv(t, api)
		k := newKey(t, "ed25519", 0)
		img, err := SignBundle(e.desc, k.priv)
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if m.ArtifactType != BundleMediaType || m.Config.MediaType != EmptyMediaType || m.Config.Size != 2 ||
			m.Config.Digest.String() != "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a" {
			t.Errorf("manifest %+v", m)
		}
		if m.Subject == nil || m.Subject.Digest != e.d || m.Subject.Size != e.desc.Size || m.Subject.MediaType != e.desc.MediaType {
			t.Errorf("subject %+v, want %+v", m.Subject, e.desc)
		}
		if m.Annotations[BundleContentAnnotation] != "dsse-envelope" || m.Annotations[BundlePredicateTypeAnnotation] != SignPredicateType {
			t.Errorf("annotations %v", m.Annotations)
		}
		if len(m.Layers) != 1 || m.Layers[0].MediaType != BundleMediaType {
			t.Fatalf("layers %+v", m.Layers)
		}
		ls, _ := img.Layers()
		rc, _ := ls[0].Compressed()
		var b struct {
			MediaType            string
			VerificationMaterial struct {
				PublicKey   struct{ Hint string }
				TlogEntries []any
			}
			DSSEEnvelope struct {
				Payload     []byte
				PayloadType string
				Signatures  []struct {
					Sig   []byte
					KeyID *string `json:"keyid"`
				}
			}
		}
		if err := json.NewDecoder(rc).Decode(&b); err != nil {
			t.Fatal(err)
		}
		hint := sha256.Sum256(mustDER(t, k.priv.Public()))
		if b.MediaType != BundleMediaType || b.VerificationMaterial.PublicKey.Hint != base64.StdEncoding.EncodeToString(hint[:]) ||
			b.VerificationMaterial.TlogEntries == nil || len(b.VerificationMaterial.TlogEntries) != 0 {
			t.Errorf("bundle %+v", b)
		}
		wantStmt := `{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"` + e.d.Hex +
			`"}}],"predicateType":"https://sigstore.dev/cosign/sign/v1"}`
		env := b.DSSEEnvelope
		if string(env.Payload) != wantStmt || env.PayloadType != InTotoPayloadType || len(env.Signatures) != 1 ||
			env.Signatures[0].KeyID == nil || *env.Signatures[0].KeyID != "" {
			t.Errorf("envelope %+v", env)
		}
		wantPAE := "DSSEv1 28 application/vnd.in-toto+json " + strconv.Itoa(len(wantStmt)) + " " + wantStmt
		if !ed25519.Verify(k.priv.Public().(ed25519.PublicKey), []byte(wantPAE), env.Signatures[0].Sig) {
			t.Error("the signature is not pure Ed25519 over the PAE")
		}

		// Pushed, it is listed as a referrer; without the API, through the
		// sha256-<hex> tag that go-containerregistry maintains.
		if err := PushBundle(context.Background(), e.repo, e.desc, k.priv); err != nil {
			t.Fatal(err)
		}
		if !api {
			idx, err := remote.Index(e.repo.Tag("sha256-" + e.d.Hex))
			if err != nil {
				t.Fatalf("no referrers tag: %v", err)
			}
			im, _ := idx.IndexManifest()
			if len(im.Manifests) != 1 || im.Manifests[0].ArtifactType != BundleMediaType {
				t.Errorf("referrers tag %+v", im)
			}
		}
		descs, err := e.src.Referrers(context.Background(), e.d)
		if err != nil || len(descs) != 1 {
			t.Fatalf("Referrers = %+v, %v", descs, err)
		}
		if api && descs[0].ArtifactType != EmptyMediaType {
			t.Logf("the in-process registry now reports artifactType %q (it used to report the config media type)", descs[0].ArtifactType)
		}
	})
}

func mustDER(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestSchemes checks which signature schemes each key type accepts: those
// cosign produces, and no others.
func TestSchemes(t *testing.T) {
	msg := []byte("payload")
	ecSign := func(k testKey, h crypto.Hash) []byte {
		hh := h.New()
		hh.Write(msg)
		sig, err := ecdsa.SignASN1(rand.Reader, k.priv.(*ecdsa.PrivateKey), hh.Sum(nil))
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	rsaKey := newKey(t, "rsa2048", 0)
	edKey := newKey(t, "ed25519", 0)
	ph := sha512.Sum512(msg)
	edph, err := edKey.priv.(ed25519.PrivateKey).Sign(rand.Reader, ph[:], &ed25519.Options{Hash: crypto.SHA512})
	if err != nil {
		t.Fatal(err)
	}
	rh256 := sha256.Sum256(msg)
	pss, _ := rsa.SignPSS(rand.Reader, rsaKey.priv.(*rsa.PrivateKey), crypto.SHA256, rh256[:], nil)
	rh512 := sha512.Sum512(msg)
	pkcs512, _ := rsa.SignPKCS1v15(rand.Reader, rsaKey.priv.(*rsa.PrivateKey), crypto.SHA512, rh512[:])
	tests := []struct {
		name string
		k    testKey
		sig  []byte
		want bool
	}{
		{"P-256 SHA-256", newKey(t, "p256", 0), ecSign(newKey(t, "p256", 0), crypto.SHA256), true},
		{"P-256 SHA-384", newKey(t, "p256", 0), ecSign(newKey(t, "p256", 0), crypto.SHA384), false},
		{"P-384 SHA-256", newKey(t, "p384", 0), ecSign(newKey(t, "p384", 0), crypto.SHA256), true},
		{"P-384 SHA-384", newKey(t, "p384", 0), ecSign(newKey(t, "p384", 0), crypto.SHA384), true},
		{"P-384 SHA-512", newKey(t, "p384", 0), ecSign(newKey(t, "p384", 0), crypto.SHA512), false},
		{"P-521 SHA-256", newKey(t, "p521", 0), ecSign(newKey(t, "p521", 0), crypto.SHA256), true},
		{"P-521 SHA-512", newKey(t, "p521", 0), ecSign(newKey(t, "p521", 0), crypto.SHA512), true},
		{"Ed25519", edKey, ed25519.Sign(edKey.priv.(ed25519.PrivateKey), msg), true},
		{"Ed25519ph", edKey, edph, true},
		{"RSA PKCS1v15 SHA-256", rsaKey, mustSign(t, rsaKey, msg), true},
		{"RSA PKCS1v15 SHA-512", rsaKey, pkcs512, false},
		{"RSA PSS SHA-256", rsaKey, pss, false},
		{"another key", newKey(t, "p256", 1), ecSign(newKey(t, "p256", 0), crypto.SHA256), false},
	}
	for _, tt := range tests {
		if got := verifyBytes(tt.k.key.Public, msg, tt.sig); got != tt.want {
			t.Errorf("%s: verified = %v, want %v", tt.name, got, tt.want)
		}
	}
	// signBytes writes what cosign verify checks by default.
	for _, kind := range keyKinds {
		k := newKey(t, kind, 0)
		sig := mustSign(t, k, msg)
		ok := false
		switch pub := k.priv.Public().(type) {
		case *ecdsa.PublicKey:
			ok = ecdsa.VerifyASN1(pub, rh256[:], sig)
		case *rsa.PublicKey:
			ok = rsa.VerifyPKCS1v15(pub, crypto.SHA256, rh256[:], sig) == nil
		case ed25519.PublicKey:
			ok = ed25519.Verify(pub, msg, sig)
		}
		if !ok {
			t.Errorf("%s: signBytes did not write the default cosign scheme", kind)
		}
	}
}

func mustSign(t *testing.T, k testKey, msg []byte) []byte {
	t.Helper()
	sig, err := signBytes(k.priv, msg)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}
