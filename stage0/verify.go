package stage0

import (
	"context"
	"fmt"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/image/fetch"
	"github.com/karman-project/karman/signing/policy"
)

// VerifyImages returns the fetch.Options.Verify hook that enforces the
// signature policy of configDir (policy.json and keys/, see
// signing/policy). The policy is read when the first image needs it, so a
// broken policy fails the first fetch, not a run of stored images.
//
// With insecure (--insecure-options=image) nothing is verified and warn,
// if set, receives one line per image saying so.
func VerifyImages(configDir string, insecure bool, warn func(msg string)) func(context.Context, fetch.Target) error {
	var v *policy.Verifier
	return func(ctx context.Context, t fetch.Target) error {
		if insecure {
			if warn != nil {
				warn(fmt.Sprintf("WARNING: signature verification skipped for %s (%s) (--insecure-options=image)", t.Ref, t.Digest))
			}
			return nil
		}
		if v == nil {
			var err error
			if v, err = policy.NewVerifier(configDir); err != nil {
				return fmt.Errorf("signature policy: %w; fix it, or skip verification once with --insecure-options=image", err)
			}
		}
		_, err := v.Check(ctx, PolicyImage(t))
		return err
	}
}

// PolicyImage is what the signature policy judges of a fetch target.
func PolicyImage(t fetch.Target) policy.Image {
	return policy.Image{
		Name: t.Ref.String(), Scope: t.Scope, Digest: t.Digest,
		Signatures: t.Signatures, Archive: t.Ref.Transport == image.DockerArchive,
	}
}
