package pull

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/image/fetch"
	"github.com/karman-project/karman/image/registries"
	"github.com/karman-project/karman/image/store"
	"github.com/karman-project/karman/signing/policy"
	"github.com/karman-project/karman/stage0"
)

// Local is the stage0.Fetcher that fetches in the calling process: the
// image's signatures are judged by the trust policy of ConfigDir before
// anything is fetched into Store, and registry images are pulled from
// where ConfigDir's registries.conf says (read again for each fetch).
type Local struct {
	Store     *store.Store
	ConfigDir string
	Log       *slog.Logger
	// Warn, if set, receives the warnings meant for the user (an image
	// fetched without verification).
	Warn func(msg string)
	// Keychain supplies registry credentials; nil: the Docker config's
	// (fetch.Options.Keychain).
	Keychain authn.Keychain
}

// Fetch fetches ref (see stage0.Fetcher).
func (l Local) Fetch(ctx context.Context, ref string, o stage0.FetchOptions) (v1.Hash, error) {
	r, err := image.ParseReference(ref)
	if err != nil {
		return v1.Hash{}, err
	}
	regs, err := registries.Load(l.ConfigDir)
	if err != nil {
		return v1.Hash{}, err
	}
	iv := VerifyImages(l.ConfigDir, o.InsecureImage, l.Warn)
	img, err := fetch.Fetch(ctx, r, fetch.Options{
		Store: l.Store, InsecureHTTP: o.InsecureHTTP, InsecureTLS: o.InsecureTLS, Logger: l.Log,
		Registries: regs, Keychain: l.Keychain, Verify: iv.Verify, Warm: iv.Warm,
	})
	if err != nil {
		return v1.Hash{}, err
	}
	return v1.NewHash(img.Digest)
}

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
