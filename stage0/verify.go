package stage0

import (
	"context"
	"fmt"
	"sync"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/image/fetch"
	"github.com/karman-project/karman/signing/policy"
)

// ImageVerifier enforces the signature policy of a configuration
// directory (policy.json and keys/, see signing/policy) on fetches: its
// Verify and Warm methods are fetch.Options' hooks of the same names.
type ImageVerifier struct {
	configDir string
	insecure  bool
	warn      func(msg string)

	load sync.Once
	v    *policy.Verifier
	err  error
}

// VerifyImages returns the verifier of configDir's policy. The policy is
// read when the first fetch needs it (Warm, or else the first Verify), so
// a broken policy fails the first fetch, not a run of stored images.
//
// With insecure (--insecure-options=image) nothing is verified and warn,
// if set, receives one line per image saying so.
func VerifyImages(configDir string, insecure bool, warn func(msg string)) *ImageVerifier {
	return &ImageVerifier{configDir: configDir, insecure: insecure, warn: warn}
}

// Warm reads the policy and parses its keys, once: a fetch calls it in the
// background while the registry answers, so that Verify finds them ready.
func (iv *ImageVerifier) Warm() {
	if iv.insecure {
		return
	}
	iv.load.Do(func() {
		if iv.v, iv.err = policy.NewVerifier(iv.configDir); iv.err != nil {
			iv.err = fmt.Errorf("signature policy: %w; fix it, or skip verification once with --insecure-options=image", iv.err)
		}
	})
}

// Verify judges t by the policy; see fetch.Options.Verify.
func (iv *ImageVerifier) Verify(ctx context.Context, t fetch.Target) error {
	if iv.insecure {
		if iv.warn != nil {
			iv.warn(fmt.Sprintf("WARNING: signature verification skipped for %s (%s) (--insecure-options=image)", t.Ref, t.Digest))
		}
		return nil
	}
	iv.Warm()
	if iv.err != nil {
		return iv.err
	}
	_, err := iv.v.Check(ctx, PolicyImage(t))
	return err
}

// PolicyImage is what the signature policy judges of a fetch target.
func PolicyImage(t fetch.Target) policy.Image {
	return policy.Image{
		Name: t.Ref.String(), Scope: t.Scope, Digest: t.Digest,
		Signatures: t.Signatures, Archive: t.Ref.Transport == image.DockerArchive,
	}
}
