package cosign

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/signing"
	"github.com/karman-project/karman/tests/testimage"
)

// apiModes runs f with and without the registry's referrers API, so that
// both the API and the sha256-<hex> tag fallback are exercised.
func apiModes(t *testing.T, f func(t *testing.T, referrersAPI bool)) {
	for _, api := range []bool{true, false} {
		t.Run(fmt.Sprintf("referrersAPI=%v", api), func(t *testing.T) { f(t, api) })
	}
}

func TestSignVerify(t *testing.T) {
	apiModes(t, func(t *testing.T, api bool) {
		for _, kind := range keyKinds {
			for _, format := range []string{FormatSimpleSigning, FormatBundle} {
				t.Run(kind+"/"+format, func(t *testing.T) {
					e := newEnv(t, api)
					k := newKey(t, kind, 0)
					if format == FormatBundle {
						e.pushBundle(t, k)
					} else {
						e.pushSimple(t, k)
					}
					other := newKey(t, "p256", 1)
					res := e.verify(t, other.key, k.key)
					if res.Verified == nil {
						t.Fatalf("not verified: %+v", res.Signatures)
					}
					if len(res.Signatures) != 1 {
						t.Fatalf("%d signatures, want 1: %+v", len(res.Signatures), res.Signatures)
					}
					s := res.Verified
					if s.Format != format || s.KeyID != k.key.ID || s.Err != nil {
						t.Errorf("verified = %+v, want format %s key %s", *s, format, k.key.ID)
					}
					if format == FormatSimpleSigning && s.Location != SigTag(e.d) {
						t.Errorf("location %q, want %q", s.Location, SigTag(e.d))
					}
					if format == FormatBundle && !strings.HasPrefix(s.Location, "sha256:") {
						t.Errorf("location %q, want a referrer digest", s.Location)
					}
				})
			}
		}
	})
}

func TestWrongKey(t *testing.T) {
	apiModes(t, func(t *testing.T, api bool) {
		e := newEnv(t, api)
		signer, trusted := newKey(t, "p256", 0), newKey(t, "p256", 1)
		e.pushSimple(t, signer)
		e.pushBundle(t, signer)
		res := e.verify(t, trusted.key)
		if res.Verified != nil {
			t.Fatalf("verified by an untrusted key: %+v", *res.Verified)
		}
		if len(res.Signatures) != 2 {
			t.Fatalf("%d signatures, want 2", len(res.Signatures))
		}
		for _, s := range res.Signatures {
			if !errors.Is(s.Err, ErrNotVerified) || s.KeyID != "" {
				t.Errorf("%s: Err = %v, KeyID %q; want ErrNotVerified", s.Format, s.Err, s.KeyID)
			}
			if !strings.Contains(s.Err.Error(), "key") || !strings.Contains(s.Err.Error(), trusted.key.ID[:12]) {
				t.Errorf("%s: the error does not name the keys tried: %v", s.Format, s.Err)
			}
		}
		if res := e.verify(t); res.Verified != nil || !errors.Is(res.Signatures[0].Err, ErrNotVerified) {
			t.Errorf("no trusted key: %+v", res.Signatures)
		}
	})
}

func TestTwoSignatures(t *testing.T) {
	apiModes(t, func(t *testing.T, api bool) {
		untrusted, trusted := newKey(t, "p256", 0), newKey(t, "ed25519", 0)
		t.Run("simple", func(t *testing.T) {
			e := newEnv(t, api)
			e.pushSimple(t, untrusted)
			e.pushSimple(t, trusted)
			res := e.verify(t, trusted.key)
			if len(res.Signatures) != 2 || res.Verified == nil || res.Verified.KeyID != trusted.key.ID {
				t.Fatalf("result %+v", res)
			}
			if !errors.Is(res.Signatures[0].Err, ErrNotVerified) {
				t.Errorf("first signature: %v", res.Signatures[0].Err)
			}
		})
		t.Run("bundles", func(t *testing.T) {
			e := newEnv(t, api)
			e.pushBundle(t, untrusted)
			e.pushBundle(t, trusted)
			res := e.verify(t, trusted.key)
			if len(res.Signatures) != 2 || res.Verified == nil || res.Verified.KeyID != trusted.key.ID {
				t.Fatalf("result %+v", res)
			}
		})
		t.Run("mixed", func(t *testing.T) {
			e := newEnv(t, api)
			e.pushBundle(t, untrusted)
			e.pushSimple(t, trusted)
			res := e.verify(t, trusted.key)
			if len(res.Signatures) != 2 || res.Verified == nil || res.Verified.Format != FormatSimpleSigning {
				t.Fatalf("result %+v", res)
			}
			if res.Signatures[0].Format != FormatBundle {
				t.Errorf("referrers are not looked at first: %+v", res.Signatures)
			}
		})
	})
}

func TestUnsigned(t *testing.T) {
	apiModes(t, func(t *testing.T, api bool) {
		e := newEnv(t, api)
		res, err := Verify(context.Background(), e.src, e.d, []signing.Key{newKey(t, "p256", 0).key})
		if err != nil || len(res.Signatures) != 0 || res.Verified != nil || res.Truncated {
			t.Fatalf("Verify = %+v, %v; want an empty result", res, err)
		}
		// A repository that does not exist at all.
		repo, _ := name.NewRepository(e.repo.RegistryStr() + "/no/such")
		res, err = Verify(context.Background(), RegistrySource(repo), e.d, nil)
		if err != nil || len(res.Signatures) != 0 {
			t.Fatalf("unknown repository: Verify = %+v, %v", res, err)
		}
	})
}

func TestSignSimpleAppends(t *testing.T) {
	e := newEnv(t, false)
	a, b := newKey(t, "p256", 0), newKey(t, "ed25519", 0)
	e.pushSimple(t, a)
	e.pushSimple(t, a) // the same key again: not duplicated
	if n := len(e.verify(t, a.key).Signatures); n != 1 {
		t.Fatalf("signing twice with one key gave %d signatures", n)
	}
	e.pushSimple(t, b)
	res := e.verify(t, a.key, b.key)
	if len(res.Signatures) != 2 {
		t.Fatalf("%d signatures, want 2", len(res.Signatures))
	}
	for _, s := range res.Signatures {
		if s.Err != nil {
			t.Errorf("signature %+v", s)
		}
	}
}

func TestRegistryFailure(t *testing.T) {
	srv := httptest.NewServer(nil)
	srv.Close() // nothing listens there any more
	repo, _ := name.NewRepository(strings.TrimPrefix(srv.URL, "http://") + "/test/app")
	d, _ := v1.NewHash("sha256:" + strings.Repeat("ab", 32))
	if _, err := Verify(context.Background(), RegistrySource(repo), d, nil); err == nil {
		t.Fatal("Verify against a dead registry succeeded")
	}
}

func TestBadDigest(t *testing.T) {
	e := newEnv(t, false)
	for _, d := range []v1.Hash{{Algorithm: "sha512", Hex: strings.Repeat("a", 128)}, {Algorithm: "sha256", Hex: "ABC"}} {
		if _, err := Verify(context.Background(), e.src, d, nil); !errors.Is(err, signing.ErrMalformed) {
			t.Errorf("Verify(%v) = %v, want ErrMalformed", d, err)
		}
	}
}

func TestBusybox(t *testing.T) {
	img := testimage.Must(t)(testimage.Busybox(testimage.Options{}))
	e := newEnvImage(t, true, img)
	k := newKey(t, "p256", 0)
	e.pushSimple(t, k)
	e.pushBundle(t, k)
	res := e.verify(t, k.key)
	if len(res.Signatures) != 2 || res.Signatures[0].Err != nil || res.Signatures[1].Err != nil {
		t.Fatalf("result %+v", res.Signatures)
	}
}

// countingSource counts the blobs read through it; named says whether it
// passes the repository name on (signing.NamedSource).
type countingSource struct {
	signing.Source
	blobs *atomic.Int32
}

func (s countingSource) Blob(ctx context.Context, d v1.Hash, limit int64) ([]byte, error) {
	s.blobs.Add(1)
	return s.Source.Blob(ctx, d, limit)
}

type namedCountingSource struct{ countingSource }

func (s namedCountingSource) RepositoryName() string {
	return s.Source.(signing.NamedSource).RepositoryName()
}

// TestSimplePayloadRebuilt: a .sig payload that names the repository as
// cosign writes it is rebuilt locally, not read (one round trip less on
// every fetch); any other payload is read, and either way the signature
// and the payload are checked the same.
func TestSimplePayloadRebuilt(t *testing.T) {
	k := newKey(t, "p256", 0)
	for _, tc := range []struct {
		name      string
		named     bool
		dockerRef string // "" : the repository's name, as PushSimple writes it
		forDigest bool   // the payload names another digest
		reads     int32
		verified  bool
	}{
		{name: "rebuilt", named: true, reads: 0, verified: true},
		{name: "source without a name", named: false, reads: 1, verified: true},
		{name: "other docker-reference", named: true, dockerRef: "elsewhere.example/team/app", reads: 1, verified: true},
		{name: "payload for another digest", named: true, forDigest: true, reads: 1, verified: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, false)
			ref, d := tc.dockerRef, e.d
			if ref == "" {
				ref = e.repo.Name()
			}
			if tc.forDigest {
				d = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
			}
			payload, err := simplePayload(ref, d)
			if err != nil {
				t.Fatal(err)
			}
			e.pushRawSimple(t, [][]byte{payload}, []string{sign64(t, k, payload)})
			var n atomic.Int32
			var src signing.Source = countingSource{e.src, &n}
			if tc.named {
				src = namedCountingSource{countingSource{e.src, &n}}
			}
			res, err := Verify(context.Background(), src, e.d, []signing.Key{k.key})
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Verified != nil; got != tc.verified {
				t.Errorf("verified = %v, want %v: %+v", got, tc.verified, res.Signatures)
			}
			if got := n.Load(); got != tc.reads {
				t.Errorf("%d payload reads, want %d", got, tc.reads)
			}
		})
	}
}
