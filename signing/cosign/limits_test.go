package cosign

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/karman-project/karman/signing"
	"github.com/karman-project/karman/tests/testenv"
)

// unchecked builds an image from m without newImage's size guard.
func unchecked(t *testing.T, m v1.Manifest, config []byte, configType types.MediaType, layers ...v1.Layer) v1.Image {
	t.Helper()
	cl := static.NewLayer(config, configType)
	ch, _ := cl.Digest()
	blobs := map[v1.Hash]partial.CompressedLayer{ch: cl}
	for _, l := range layers {
		h, _ := l.Digest()
		blobs[h] = l
	}
	m.SchemaVersion, m.MediaType = 2, types.OCIManifestSchema1
	m.Config = v1.Descriptor{MediaType: configType, Size: int64(len(config)), Digest: ch}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	img, err := partial.CompressedToImage(&artifact{manifest: raw, config: config, blobs: blobs})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// simpleLayer is a .sig layer holding payload signed by k, with its
// descriptor size set to size (the real size when 0).
func simpleLayer(t *testing.T, k testKey, payload []byte, size int64) (v1.Descriptor, v1.Layer) {
	l := static.NewLayer(payload, SimpleSigningMediaType)
	h, _ := l.Digest()
	if size == 0 {
		size = int64(len(payload))
	}
	return v1.Descriptor{MediaType: SimpleSigningMediaType, Size: size, Digest: h,
		Annotations: map[string]string{SignatureAnnotation: sign64(t, k, payload)}}, l
}

// bigPayload is a valid payload for e.d padded past MaxPayloadSize.
func bigPayload(t *testing.T, e *env) []byte {
	p, err := simplePayload(e.repo.Name(), e.d)
	if err != nil {
		t.Fatal(err)
	}
	pad := `"optional":{"pad":"` + strings.Repeat("x", MaxPayloadSize) + `"}`
	return []byte(strings.Replace(string(p), `"optional":null`, pad, 1))
}

func TestOversize(t *testing.T) {
	k := newKey(t, "p256", 0)
	sigTag := func(e *env, img v1.Image) {
		if err := remote.Write(e.repo.Tag(SigTag(e.d)), img); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		push   func(e *env)
		format string
		msg    string
	}{
		{"signature manifest", func(e *env) {
			p, _ := simplePayload(e.repo.Name(), e.d)
			desc, l := simpleLayer(t, k, p, 0)
			m := v1.Manifest{Layers: []v1.Descriptor{desc}, Annotations: map[string]string{"pad": strings.Repeat("x", MaxManifestSize)}}
			sigTag(e, unchecked(t, m, []byte("{}"), types.OCIConfigJSON, l))
		}, FormatSimpleSigning, "262144"},
		{"payload", func(e *env) {
			desc, l := simpleLayer(t, k, bigPayload(t, e), 0)
			sigTag(e, unchecked(t, v1.Manifest{Layers: []v1.Descriptor{desc}}, []byte("{}"), types.OCIConfigJSON, l))
		}, FormatSimpleSigning, "at most 262144 allowed"},
		{"payload whose descriptor lies about its size", func(e *env) {
			desc, l := simpleLayer(t, k, bigPayload(t, e), 100)
			sigTag(e, unchecked(t, v1.Manifest{Layers: []v1.Descriptor{desc}}, []byte("{}"), types.OCIConfigJSON, l))
		}, FormatSimpleSigning, "262144"},
		{"bundle", func(e *env) {
			stmt, _ := statement(e.d)
			b := signedBundle(t, k, InTotoPayloadType, stmt)
			b = []byte(strings.Replace(string(b), `"tlogEntries":[]`, `"tlogEntries":["`+strings.Repeat("x", MaxPayloadSize)+`"]`, 1))
			e.pushRawBundle(t, b, SignPredicateType)
		}, FormatBundle, "at most 262144 allowed"},
		{"referrer manifest", func(e *env) {
			stmt, _ := statement(e.d)
			b := signedBundle(t, k, InTotoPayloadType, stmt)
			l := static.NewLayer(b, BundleMediaType)
			h, _ := l.Digest()
			e.writeReferrer(t, unchecked(t, v1.Manifest{
				ArtifactType: BundleMediaType,
				Layers:       []v1.Descriptor{{MediaType: BundleMediaType, Size: int64(len(b)), Digest: h}},
				Subject:      &e.desc,
				Annotations:  map[string]string{"pad": strings.Repeat("x", MaxManifestSize)},
			}, []byte("{}"), EmptyMediaType, l))
		}, FormatBundle, "262144"},
	}
	for _, tt := range tests {
		apiModes(t, func(t *testing.T, api bool) {
			t.Run(tt.name, func(t *testing.T) {
				e := newEnv(t, api)
				tt.push(e)
				checkRefused(t, e.verify(t, k.key), tt.format, signing.ErrMalformed, tt.msg)
			})
		})
	}
}

func TestManySimpleSignatures(t *testing.T) {
	e := newEnv(t, false)
	untrusted, trusted := newKey(t, "ed25519", 1), newKey(t, "ed25519", 0)
	var descs []v1.Descriptor
	var layers []v1.Layer
	for i := range MaxSignatures + 6 {
		p, _ := simplePayload(e.repo.Name()+"/"+strings.Repeat("x", i), e.d)
		k := untrusted
		if i == MaxSignatures+5 {
			k = trusted // beyond the bound: never looked at
		}
		d, l := simpleLayer(t, k, p, 0)
		descs, layers = append(descs, d), append(layers, l)
	}
	if err := remote.Write(e.repo.Tag(SigTag(e.d)), unchecked(t, v1.Manifest{Layers: descs}, []byte("{}"), types.OCIConfigJSON, layers...)); err != nil {
		t.Fatal(err)
	}
	res := e.verify(t, trusted.key)
	if len(res.Signatures) != MaxSignatures || !res.Truncated || res.Verified != nil {
		t.Fatalf("%d signatures, truncated %v, verified %v", len(res.Signatures), res.Truncated, res.Verified)
	}
}

func TestManyReferrers(t *testing.T) {
	testenv.SkipIfShort(t, "pushes 65 referrers")
	apiModes(t, func(t *testing.T, api bool) {
		k, other := newKey(t, "ed25519", 0), newKey(t, "p256", 1) // ECDSA: a new signature, a new referrer, each time
		t.Run("bundles", func(t *testing.T) {
			e := newEnv(t, api)
			for range MaxSignatures + 1 {
				e.pushBundle(t, other)
			}
			res := e.verify(t, k.key)
			if len(res.Signatures) != MaxSignatures || !res.Truncated || res.Verified != nil {
				t.Fatalf("%d signatures, truncated %v", len(res.Signatures), res.Truncated)
			}
		})
		t.Run("other artifacts", func(t *testing.T) {
			// Referrers that are not signatures use up MaxReferrers, not
			// MaxSignatures: the .sig tag is still looked at.
			e := newEnv(t, api)
			for i := range MaxReferrers + 1 {
				e.pushArtifact(t, "application/vnd.example.sbom", strings.Repeat("x", i))
			}
			e.pushSimple(t, k)
			res := e.verify(t, k.key)
			if len(res.Signatures) != 1 || !res.Truncated || res.Verified == nil {
				t.Fatalf("result %+v", res)
			}
		})
	})
}

// pushArtifact pushes a referrer of the image that is not a signature.
func (e *env) pushArtifact(t *testing.T, artifactType, content string) v1.Hash {
	l := static.NewLayer([]byte(content), "text/plain")
	h, _ := l.Digest()
	img, err := newImage(v1.Manifest{
		ArtifactType: artifactType,
		Layers:       []v1.Descriptor{{MediaType: "text/plain", Size: int64(len(content)), Digest: h}},
		Subject:      &e.desc,
	}, []byte("{}"), EmptyMediaType, map[v1.Hash]partial.CompressedLayer{h: l})
	if err != nil {
		t.Fatal(err)
	}
	return e.writeReferrer(t, img)
}

func TestReferrersIndexNotTrusted(t *testing.T) {
	apiModes(t, func(t *testing.T, api bool) {
		k := newKey(t, "p256", 0)
		e := newEnv(t, api)
		e.pushArtifact(t, "application/vnd.example.sbom", "sbom")
		stmt, _ := statement(e.d)
		// An attestation (another predicate type) is not a signature, even
		// when signed by a trusted key.
		e.pushRawBundle(t, signedBundle(t, k, InTotoPayloadType, stmt), "https://slsa.dev/provenance/v1")
		if res := e.verify(t, k.key); len(res.Signatures) != 0 {
			t.Fatalf("non-signatures counted: %+v", res.Signatures)
		}
		e.pushBundle(t, k)

		descs, err := e.src.Referrers(context.Background(), e.d)
		if err != nil || len(descs) != 3 {
			t.Fatalf("Referrers = %v, %v", descs, err)
		}
		for _, lie := range []string{"", "application/vnd.example.sbom", BundleMediaType, EmptyMediaType} {
			src := lyingSource{e.src, lie}
			res, err := Verify(context.Background(), src, e.d, []signing.Key{k.key})
			if err != nil || len(res.Signatures) != 1 || res.Verified == nil {
				t.Errorf("index claiming %q: %+v, %v", lie, res, err)
			}
		}
	})
}

func TestMissingReferrer(t *testing.T) {
	// A referrers list naming a manifest that is not there, twice.
	e := newEnv(t, true)
	k := newKey(t, "p256", 0)
	e.pushBundle(t, k)
	missing := v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: otherDigest, Size: 10}
	src := extraReferrer{extraReferrer{e.src, missing}, missing} // listed twice, looked at once
	res, err := Verify(context.Background(), src, e.d, []signing.Key{k.key})
	if err != nil || res.Verified == nil || len(res.Signatures) != 2 || !errors.Is(res.Signatures[0].Err, signing.ErrNotFound) {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
}

type extraReferrer struct {
	signing.Source
	desc v1.Descriptor
}

func (s extraReferrer) Referrers(ctx context.Context, d v1.Hash) ([]v1.Descriptor, error) {
	descs, err := s.Source.Referrers(ctx, d)
	return append([]v1.Descriptor{s.desc}, descs...), err
}
