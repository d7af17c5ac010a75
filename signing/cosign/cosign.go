package cosign

import (
	"context"
	"errors"
	"fmt"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/signing"
)

// Format names.
const (
	FormatSimpleSigning = "simple-signing"
	FormatBundle        = "sigstore-bundle"
)

// Media types, annotations and type names of the two formats.
const (
	// SimpleSigningMediaType is the media type of a layer of a .sig
	// manifest; the layer's blob is the payload.
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	// SignatureAnnotation holds, on a .sig manifest's layer, the standard
	// base64 signature of the payload.
	SignatureAnnotation = "dev.cosignproject.cosign/signature"
	// SimpleSigningType is the payload's critical.type.
	SimpleSigningType = "cosign container image signature"

	// BundleMediaType is the sigstore bundle v0.3: the referrer manifest's
	// artifactType, its layer's media type and the bundle's mediaType.
	BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// BundleContentAnnotation and BundlePredicateTypeAnnotation annotate the
	// referrer manifest (unsigned: informative only).
	BundleContentAnnotation       = "dev.sigstore.bundle.content"
	BundlePredicateTypeAnnotation = "dev.sigstore.bundle.predicateType"
	// InTotoPayloadType is the DSSE payloadType of the bundle.
	InTotoPayloadType = "application/vnd.in-toto+json"
	// StatementType is the in-toto statement's _type.
	StatementType = "https://in-toto.io/Statement/v1"
	// SignPredicateType is the predicateType of cosign's image signatures.
	SignPredicateType = "https://sigstore.dev/cosign/sign/v1"
	// EmptyMediaType is the media type of the referrer manifest's config,
	// the two bytes "{}".
	EmptyMediaType = "application/vnd.oci.empty.v1+json"
)

// Limits. Verify never reads more than these from a Source.
const (
	// MaxManifestSize bounds a .sig or referrer manifest.
	MaxManifestSize = 256 << 10
	// MaxPayloadSize bounds a simple-signing payload and a bundle.
	MaxPayloadSize = 256 << 10
	// MaxSignatures bounds the signatures looked at, both formats together.
	MaxSignatures = 64
	// MaxReferrers bounds the referrer manifests opened (signatures or not).
	MaxReferrers = 64
)

// Signature is one signature found for an image.
type Signature struct {
	Format string
	// Where it was found: "sha256-<hex>.sig" or the referrer manifest digest.
	Location string
	// KeyID is the fingerprint of the trusted key that verified it; empty
	// when none did (even when a key verified the cryptography, the
	// signature counts only when its payload names the image too).
	KeyID string
	// Err says why it did not verify (wrong key, bad signature, payload for
	// another digest, malformed...), nil when verified. It wraps
	// ErrNotVerified, signing.ErrMalformed or signing.ErrNotFound.
	Err error
}

// Result of looking for an image's signatures.
type Result struct {
	Signatures []Signature // every signature found, verified or not
	Verified   *Signature  // the first that verified, nil if none
	// Truncated is set when Verify stopped looking before the end, having
	// looked at MaxSignatures signatures or opened MaxReferrers referrer
	// manifests: later signatures (the .sig tag's, when the referrers used
	// up MaxSignatures) were not looked at.
	Truncated bool
}

// Verify finds the signatures of the image whose manifest digest is d in src
// and checks each against keys.
//
// It looks at the referrers of d (opening each referrer manifest and
// reading its own artifactType; the referrers list is not trusted) and at
// the tag sha256-<hex>.sig, both at once, and lists the referrers'
// signatures first. For each signature it checks the cryptography
// over the exact bytes first, with every key (key hints are not trusted),
// then parses the payload strictly, then checks that the payload names d.
// See the package documentation for the details and the limits.
//
// A missing signature is not an error: the Result is empty. A registry
// failure is an error; problems of one signature are in its Err.
func Verify(ctx context.Context, src signing.Source, d v1.Hash, keys []signing.Key) (Result, error) {
	return verify(ctx, src, d, keys, false)
}

// VerifyFirst is Verify that stops looking as soon as one signature by a
// trusted key verified: what a fetch needs. It looks at the tag
// sha256-<hex>.sig first (one round trip, see the package documentation)
// and at the referrers only when the tag holds no good signature. Result
// then lists the signatures seen so far.
func VerifyFirst(ctx context.Context, src signing.Source, d v1.Hash, keys []signing.Key) (Result, error) {
	return verify(ctx, src, d, keys, true)
}

func verify(ctx context.Context, src signing.Source, d v1.Hash, keys []signing.Key, first bool) (Result, error) {
	if err := checkDigest(d); err != nil {
		return Result{}, err
	}
	refs := &verifier{src: src, d: d, keys: keys}
	tag := &verifier{src: src, d: d, keys: keys}
	var refsErr, tagErr error
	if first {
		// The .sig tag costs one round trip (its payload is rebuilt
		// locally), the referrers at least three: look there first, and
		// at the referrers only when it holds no good signature. Both at
		// once would be no faster: on a loaded host the second connection
		// slows the first.
		tag.first = true
		if tagErr = tag.sigTag(ctx); tagErr == nil {
			if res, ok := tag.res.verified(); ok {
				return res, nil
			}
		}
		refs.first = true
		refsErr = refs.referrers(ctx)
	} else {
		// Every signature is wanted: the two places are independent, look
		// in both at once.
		var wg sync.WaitGroup
		wg.Go(func() { refsErr = refs.referrers(ctx) })
		wg.Go(func() { tagErr = tag.sigTag(ctx) })
		wg.Wait()
	}
	res := Result{
		Signatures: append(refs.res.Signatures, tag.res.Signatures...),
		Truncated:  refs.res.Truncated || tag.res.Truncated,
	}
	if len(res.Signatures) > MaxSignatures {
		res.Signatures, res.Truncated = res.Signatures[:MaxSignatures], true
	}
	if first {
		if r, ok := res.verified(); ok {
			return r, nil
		}
	}
	if err := errors.Join(refsErr, tagErr); err != nil {
		return res, err
	}
	res, _ = res.verified()
	return res, nil
}

// verified returns r with Verified set when one of its signatures verified.
func (r Result) verified() (Result, bool) {
	var ok bool
	r.Verified, ok = r.firstVerified()
	return r, ok
}

func (r *Result) firstVerified() (*Signature, bool) {
	for i := range r.Signatures {
		if r.Signatures[i].Err == nil {
			return &r.Signatures[i], true
		}
	}
	return nil, false
}

// verifier is the state of one Verify call.
type verifier struct {
	src    signing.Source
	d      v1.Hash
	keys   []signing.Key
	res    Result
	opened int // referrer manifests opened
	// first: stop at the first signature that verified (VerifyFirst).
	first    bool
	verified bool
}

// full reports whether MaxSignatures signatures have been looked at, and
// marks the result truncated if so; or, for VerifyFirst, whether one
// signature verified.
func (v *verifier) full() bool {
	if v.first && v.verified {
		return true
	}
	if len(v.res.Signatures) >= MaxSignatures {
		v.res.Truncated = true
		return true
	}
	return false
}

func (v *verifier) add(format, loc, keyID string, err error) {
	if err != nil {
		keyID = ""
	}
	v.res.Signatures = append(v.res.Signatures, Signature{Format: format, Location: loc, KeyID: keyID, Err: err})
	if err == nil {
		v.verified = true
	}
}

// checkDigest accepts sha256 digests only: both formats name the image by
// its sha256 digest.
func checkDigest(d v1.Hash) error {
	if d.Algorithm != "sha256" || len(d.Hex) != 64 {
		return fmt.Errorf("image digest %q: a sha256 digest is required: %w", d.String(), signing.ErrMalformed)
	}
	for _, c := range d.Hex {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("image digest %q: not lowercase hex: %w", d.String(), signing.ErrMalformed)
		}
	}
	return nil
}

// SigTag is the tag of the simple-signing signatures of d: "sha256-<hex>.sig".
func SigTag(d v1.Hash) string {
	return d.Algorithm + "-" + d.Hex + ".sig"
}
