package cosign

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"

	"github.com/karman-project/karman/signing"
)

// env is an in-process registry on loopback holding one image.
type env struct {
	repo name.Repository
	desc v1.Descriptor // the image's
	d    v1.Hash
	src  signing.Source
}

// newEnv starts a registry, with or without the referrers API, and pushes
// a random image to it.
func newEnv(t testing.TB, referrersAPI bool) *env {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	return newEnvImage(t, referrersAPI, img)
}

func newEnvImage(t testing.TB, referrersAPI bool, img v1.Image) *env {
	t.Helper()
	srv := httptest.NewServer(registry.New(
		registry.Logger(log.New(io.Discard, "", 0)),
		registry.WithReferrersSupport(referrersAPI),
	))
	t.Cleanup(srv.Close)
	repo, err := name.NewRepository(strings.TrimPrefix(srv.URL, "http://") + "/test/app")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(repo.Tag("latest"), img); err != nil {
		t.Fatal(err)
	}
	desc, err := partial.Descriptor(img)
	if err != nil {
		t.Fatal(err)
	}
	// The production path: plain requests over an authenticated transport.
	rt, err := transport.NewWithContext(context.Background(), repo.Registry, authn.Anonymous, http.DefaultTransport, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		t.Fatal(err)
	}
	return &env{repo: repo, desc: v1.Descriptor{MediaType: desc.MediaType, Size: desc.Size, Digest: desc.Digest}, d: desc.Digest, src: HTTPSource(repo, rt)}
}

func (e *env) verify(t testing.TB, keys ...signing.Key) Result {
	t.Helper()
	res, err := Verify(context.Background(), e.src, e.d, keys)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return res
}

func (e *env) pushSimple(t testing.TB, k testKey) {
	t.Helper()
	if err := PushSimple(context.Background(), e.repo, e.d, k.priv); err != nil {
		t.Fatalf("PushSimple: %v", err)
	}
}

func (e *env) pushBundle(t testing.TB, k testKey) {
	t.Helper()
	if err := PushBundle(context.Background(), e.repo, e.desc, k.priv); err != nil {
		t.Fatalf("PushBundle: %v", err)
	}
}

// pushRawSimple pushes a .sig manifest whose layers are the given payloads
// and base64 signatures, replacing the one there.
func (e *env) pushRawSimple(t testing.TB, payloads [][]byte, sigs []string) {
	t.Helper()
	blobs := map[v1.Hash]partial.CompressedLayer{}
	var layers []v1.Descriptor
	for i, p := range payloads {
		l := static.NewLayer(p, SimpleSigningMediaType)
		h, _ := l.Digest()
		blobs[h] = l
		layers = append(layers, v1.Descriptor{
			MediaType: SimpleSigningMediaType, Size: int64(len(p)), Digest: h,
			Annotations: map[string]string{SignatureAnnotation: sigs[i]},
		})
	}
	img, err := newSigImage(layers, blobs)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(e.repo.Tag(SigTag(e.d)), img); err != nil {
		t.Fatal(err)
	}
}

// pushRawBundle pushes a referrer of the image holding bundle, annotated
// with predicateType.
func (e *env) pushRawBundle(t testing.TB, bundle []byte, predicateType string) v1.Hash {
	t.Helper()
	l := static.NewLayer(bundle, BundleMediaType)
	h, _ := l.Digest()
	img, err := newImage(v1.Manifest{
		ArtifactType: BundleMediaType,
		Layers:       []v1.Descriptor{{MediaType: BundleMediaType, Size: int64(len(bundle)), Digest: h}},
		Subject:      &e.desc,
		Annotations:  map[string]string{BundleContentAnnotation: "dsse-envelope", BundlePredicateTypeAnnotation: predicateType},
	}, []byte("{}"), EmptyMediaType, map[v1.Hash]partial.CompressedLayer{h: l})
	if err != nil {
		t.Fatal(err)
	}
	return e.writeReferrer(t, img)
}

func (e *env) writeReferrer(t testing.TB, img v1.Image) v1.Hash {
	t.Helper()
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(e.repo.Digest(h.String()), img); err != nil {
		t.Fatal(err)
	}
	return h
}

// makeBundle is a bundle around a DSSE envelope with the given parts.
func makeBundle(t testing.TB, payloadType string, body, sig []byte) []byte {
	t.Helper()
	var bj bundleJSON
	bj.MediaType = BundleMediaType
	bj.VerificationMaterial.PublicKey.Hint = "aGludA=="
	bj.VerificationMaterial.TlogEntries = []json.RawMessage{}
	bj.DSSEEnvelope.Payload = body
	bj.DSSEEnvelope.PayloadType = payloadType
	bj.DSSEEnvelope.Signatures = []dsseSignature{{Sig: sig}}
	b, err := json.Marshal(bj)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signedBundle is a bundle of body signed by k.
func signedBundle(t testing.TB, k testKey, payloadType string, body []byte) []byte {
	t.Helper()
	sig, err := signBytes(k.priv, pae(payloadType, body))
	if err != nil {
		t.Fatal(err)
	}
	return makeBundle(t, payloadType, body, sig)
}

func sign64(t testing.TB, k testKey, msg []byte) string {
	t.Helper()
	sig, err := signBytes(k.priv, msg)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// testKey is a private key and the trusted public key made from it.
type testKey struct {
	name string
	priv crypto.Signer
	key  signing.Key
}

var keyKinds = []string{"p256", "p384", "p521", "rsa2048", "ed25519"}

var (
	keyMu    sync.Mutex
	keyCache = map[string]testKey{}
)

// newKey returns a key of the given kind; the same (kind, n) gives the same
// key within a test binary, so RSA keys are generated once.
func newKey(t testing.TB, kind string, n int) testKey {
	t.Helper()
	id := kind + "/" + string(rune('0'+n))
	keyMu.Lock()
	defer keyMu.Unlock()
	if k, ok := keyCache[id]; ok {
		return k
	}
	var priv crypto.Signer
	var err error
	switch kind {
	case "p256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "p521":
		priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "rsa2048":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ed25519":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		err = errors.New("unknown key kind " + kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	key, err := keyOf(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	k := testKey{name: id, priv: priv, key: key}
	keyCache[id] = k
	return k
}

// lyingSource rewrites the artifactType of every referrer it lists.
type lyingSource struct {
	signing.Source
	artifactType string
}

func (s lyingSource) Referrers(ctx context.Context, d v1.Hash) ([]v1.Descriptor, error) {
	descs, err := s.Source.Referrers(ctx, d)
	for i := range descs {
		descs[i].ArtifactType = s.artifactType
	}
	return descs, err
}
