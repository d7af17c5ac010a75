package cosign

import (
	"context"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/karman-project/karman/signing"
)

// requestLog records every request made through it.
type requestLog struct {
	signing.NamedSource
	mu   sync.Mutex
	reqs []string
}

func (s *requestLog) log(r string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, r)
}

func (s *requestLog) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqs...)
}

func (s *requestLog) Manifest(ctx context.Context, ref string, limit int64) ([]byte, types.MediaType, error) {
	s.log("manifest " + ref)
	return s.NamedSource.Manifest(ctx, ref, limit)
}

func (s *requestLog) Referrers(ctx context.Context, d v1.Hash) ([]v1.Descriptor, error) {
	s.log("referrers " + d.String())
	return s.NamedSource.Referrers(ctx, d)
}

func (s *requestLog) Blob(ctx context.Context, d v1.Hash, limit int64) ([]byte, error) {
	s.log("blob " + d.String())
	return s.NamedSource.Blob(ctx, d, limit)
}

func countPrefix(reqs []string, prefix string) int {
	n := 0
	for _, r := range reqs {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

// TestVerifyFirstOrder: VerifyFirst reads the .sig tag first and leaves
// the referrers alone when it verifies there; with only a bundle, or a
// .sig tag signed by another key, it goes on to the referrers and finds
// the bundle. Verify (every signature) reads both.
func TestVerifyFirstOrder(t *testing.T) {
	good, other := newKey(t, "p256", 0), newKey(t, "p256", 1)
	for _, tc := range []struct {
		name            string
		simple, bundle  *testKey
		first           bool
		referrers       int // referrers lookups wanted
		verified        string
		signaturesFound int
	}{
		{name: "both formats, first", simple: &good, bundle: &good, first: true, referrers: 0, verified: FormatSimpleSigning, signaturesFound: 1},
		{name: "bundle only, first", bundle: &good, first: true, referrers: 1, verified: FormatBundle, signaturesFound: 1},
		{name: "tag by another key, first", simple: &other, bundle: &good, first: true, referrers: 1, verified: FormatBundle, signaturesFound: 2},
		{name: "both formats, all", simple: &good, bundle: &good, first: false, referrers: 1, verified: FormatBundle, signaturesFound: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, true)
			if tc.simple != nil {
				e.pushSimple(t, *tc.simple)
			}
			if tc.bundle != nil {
				e.pushBundle(t, *tc.bundle)
			}
			src := &requestLog{NamedSource: e.src.(signing.NamedSource)}
			f := Verify
			if tc.first {
				f = VerifyFirst
			}
			res, err := f(context.Background(), src, e.d, []signing.Key{good.key})
			if err != nil {
				t.Fatal(err)
			}
			if res.Verified == nil || res.Verified.Format != tc.verified {
				t.Fatalf("verified %+v, want a %s signature: %+v", res.Verified, tc.verified, res.Signatures)
			}
			if len(res.Signatures) != tc.signaturesFound {
				t.Errorf("%d signatures listed, want %d: %+v", len(res.Signatures), tc.signaturesFound, res.Signatures)
			}
			if got := countPrefix(src.requests(), "referrers "); got != tc.referrers {
				t.Errorf("%d referrers lookups, want %d (requests %q)", got, tc.referrers, src.requests())
			}
		})
	}
}

// TestPrefetch: the .sig manifest of the expected digest is requested
// before verification asks for it, and served to it once; verification of
// another digest (the tag moved) asks the registry itself and is judged on
// its own signatures: the prefetched answer is wasted, not trusted.
func TestPrefetch(t *testing.T) {
	k := newKey(t, "p256", 0)
	signed := newEnv(t, false)
	signed.pushSimple(t, k)

	t.Run("expected digest", func(t *testing.T) {
		src := &requestLog{NamedSource: signed.src.(signing.NamedSource)}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		p := Prefetch(ctx, src, signed.d)
		if _, ok := p.(signing.NamedSource); !ok {
			t.Fatal("Prefetch of a NamedSource is not a NamedSource: payloads would no longer be rebuilt")
		}
		// The request is under way before Verify is called.
		p.(*namedPrefetched).sig.wait(ctx)
		if got := src.requests(); len(got) != 1 || got[0] != "manifest "+SigTag(signed.d) {
			t.Fatalf("requests before Verify: %q", got)
		}
		res, err := VerifyFirst(ctx, p, signed.d, []signing.Key{k.key})
		if err != nil || res.Verified == nil {
			t.Fatalf("VerifyFirst: %v, %+v", err, res.Signatures)
		}
		if got := src.requests(); len(got) != 1 {
			t.Errorf("Verify asked the registry again: %q", got)
		}
		// A second Verify does not get the same answer for free.
		if _, err := VerifyFirst(ctx, p, signed.d, []signing.Key{k.key}); err != nil {
			t.Fatal(err)
		}
		if got := countPrefix(src.requests(), "manifest "); got != 2 {
			t.Errorf("%d manifest requests after two verifications, want 2", got)
		}
	})

	t.Run("tag moved", func(t *testing.T) {
		// The registry's image is unsigned; the store expected the signed
		// digest of another image.
		moved := newEnv(t, false)
		src := &requestLog{NamedSource: moved.src.(signing.NamedSource)}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		p := Prefetch(ctx, src, signed.d)
		res, err := VerifyFirst(ctx, p, moved.d, []signing.Key{k.key})
		if err != nil {
			t.Fatal(err)
		}
		if res.Verified != nil || len(res.Signatures) != 0 {
			t.Fatalf("the moved tag's unsigned image verified: %+v", res.Signatures)
		}
		if got := countPrefix(src.requests(), "manifest "+SigTag(moved.d)); got != 1 {
			t.Errorf("the moved digest's .sig tag was asked %d times, want 1 (requests %q)", got, src.requests())
		}
	})
}
