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
// names the key that verified it.
func cosignVerify(ctx context.Context, src signing.Source, d v1.Hash, keys []signing.Key) ([]Signature, error) {
	res, err := cosign.Verify(ctx, src, d, keys)
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
