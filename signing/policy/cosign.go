package policy

import (
	"context"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/signing"
	"github.com/karman-project/karman/signing/cosign"
)

// cosignVerify verifies both of cosign's formats with package cosign: a
// signature counts as verified when cosign found no problem with it and
// names the key that verified it. It stops at the first trusted signature.
func cosignVerify(ctx context.Context, src signing.Source, d v1.Hash, keys []signing.Key) ([]Signature, error) {
	return cosignResult(cosign.VerifyFirst(ctx, src, d, keys))
}

// cosignVerifyAll is cosignVerify that reports every signature found.
func cosignVerifyAll(ctx context.Context, src signing.Source, d v1.Hash, keys []signing.Key) ([]Signature, error) {
	return cosignResult(cosign.Verify(ctx, src, d, keys))
}

func cosignResult(res cosign.Result, err error) ([]Signature, error) {
	sigs := make([]Signature, 0, len(res.Signatures))
	for _, s := range res.Signatures {
		sig := Signature{Format: s.Format, Location: s.Location, KeyID: s.KeyID, Verified: s.Err == nil && s.KeyID != ""}
		if s.Err != nil {
			// The location is a field of its own; don't say it twice.
			sig.Error = strings.TrimPrefix(s.Err.Error(), s.Location+" ")
		}
		sigs = append(sigs, sig)
	}
	return sigs, err
}
