package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/image/registries"
	"github.com/karman-project/karman/image/store"
	"github.com/karman-project/karman/signing"
	"github.com/karman-project/karman/signing/cosign"
)

// Target is what the verifier judges: what a reference named (an image
// index or a manifest), resolved once and digested locally, before
// anything else of the image is fetched.
type Target struct {
	Ref image.Reference
	// Scope is the name trust policy matches: registry/repository for a
	// registry image, oci:DIR or docker-archive:FILE otherwise (absolute
	// paths).
	Scope string
	// Digest is the digest of Manifest, computed from its bytes. For an
	// index it is the index's: the platform's manifest is picked later,
	// by digest, from these very bytes.
	Digest    v1.Hash
	MediaType types.MediaType
	Manifest  []byte
	// Signatures reads the image's signatures: the registry repository
	// (through the fetch's own authenticated transport) or the OCI
	// layout. Nil for docker archives, which carry none.
	Signatures signing.Source
}

// Options configure a fetch. Store is required.
type Options struct {
	Store *store.Store
	// Platform to pick from an image index; the host's by default.
	Platform *v1.Platform
	// InsecureHTTP allows plain HTTP to non-loopback registries.
	InsecureHTTP bool
	// InsecureTLS skips TLS certificate verification.
	InsecureTLS bool
	// Registries is the registry configuration (registries.conf): where
	// each reference is pulled from. Nil pulls every reference from where
	// it says. The reference given stays the image's name and trust scope.
	Registries *registries.Config
	// Keychain supplies registry credentials; authn.DefaultKeychain (the
	// Docker config) by default.
	Keychain authn.Keychain
	// Transport is the base HTTP transport, for tests.
	Transport http.RoundTripper
	// Verify, when set, must approve the target before any config or
	// layer, or the platform's manifest of an index, is fetched; its
	// error is returned as is. Nil means no verification: this package
	// leaves the trust decision to its callers (stage0 and the CLI wire
	// the signature policy of signing/policy here).
	Verify func(ctx context.Context, t Target) error
	// Warm, when set, is called in the background as the fetch starts, so
	// that the verifier can read its policy and keys while the registry
	// answers. Verify must not depend on it having returned.
	Warm func()
	// Progress receives per-layer progress; nil is quiet.
	Progress Progress
	// Concurrency is the number of layers fetched at once (default: the
	// number of CPUs, at least 2).
	Concurrency int
	Logger      *slog.Logger
}

// HostPlatform is the platform this binary runs on.
func HostPlatform() v1.Platform {
	p := v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	if p.Architecture == "arm" {
		p.Variant = "v7"
	}
	return p
}

// Fetch brings the image ref names into the store and records the
// reference's name for it. It returns the stored image.
func Fetch(ctx context.Context, ref image.Reference, o Options) (image.Image, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Warm != nil {
		go o.Warm()
	}
	lk, err := o.Store.Use(ctx)
	if err != nil {
		return image.Image{}, err
	}
	defer lk.Unlock()

	src, err := open(ctx, ref, &o)
	if err != nil {
		return image.Image{}, err
	}
	defer src.close()
	ctx, cancel := context.WithCancel(ctx) // ends signature prefetches
	defer cancel()
	sigs := signatures(ctx, ref, src, &o)

	d, raw, mt, err := resolve(ctx, ref, src, sigs, &o)
	if err != nil {
		return image.Image{}, err
	}
	m, err := parseManifest(raw, mt)
	if err != nil {
		return image.Image{}, fmt.Errorf("image %s@%s: %w", ref, d, err)
	}
	o.Logger.Debug("resolved", "image", ref.String(), "digest", d.String(), "layers", len(m.Layers))
	if err := pull(ctx, src, d, raw, m, &o); err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			err = fmt.Errorf("%w; free space under %s or remove images with `karman image rm` and `karman image gc`", err, o.Store.Root())
		}
		return image.Image{}, fmt.Errorf("image %s@%s: %w", ref, d, err)
	}
	if err := o.Store.SetRef(ctx, store.RefName(ref), d); err != nil {
		return image.Image{}, err
	}
	return o.Store.Image(d)
}

func open(ctx context.Context, ref image.Reference, o *Options) (source, error) {
	switch ref.Transport {
	case image.OCILayout:
		return newLayoutSource(ref)
	case image.DockerArchive:
		return newArchiveSource(ref)
	case image.Registry:
		return openRegistry(ctx, ref, o)
	}
	return nil, fmt.Errorf("image %s: unknown transport %q: %w", ref, ref.Transport, image.ErrInvalidReference)
}

// Check resolves ref exactly as Fetch does and has o.Verify judge what it
// names. It fetches no config, layer or platform manifest and uses no
// store: it is `karman verify`.
func Check(ctx context.Context, ref image.Reference, o Options) error {
	if o.Verify == nil {
		return errors.New("fetch.Check: Options.Verify is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	src, err := open(ctx, ref, &o)
	if err != nil {
		return err
	}
	defer src.close()
	ctx, cancel := context.WithCancel(ctx) // ends signature prefetches
	defer cancel()
	_, err = named(ctx, ref, src, signatures(ctx, ref, src, &o), &o)
	return err
}

// signatures is where the verifier reads the signatures of ref from. When
// the digest ref resolves to is likely known before the registry answers
// (ref is a digest reference, or the store has a digest under ref's
// name), the signature lookups start now, beside the manifest request;
// verification still judges only the digest computed from the manifest
// (see cosign.Prefetch).
func signatures(ctx context.Context, ref image.Reference, src source, o *Options) signing.Source {
	sigs := src.signatures()
	if sigs == nil || o.Verify == nil || ref.Transport != image.Registry {
		return sigs
	}
	if d, ok := expectedDigest(ref, o.Store); ok {
		return cosign.Prefetch(ctx, sigs, d)
	}
	return sigs
}

// expectedDigest is the digest ref is expected to resolve to: its own
// digest, or the one stored under its name by an earlier fetch. (For a
// name that resolves to an image index the store holds the platform
// manifest's digest, while the signatures name the index's: that prefetch
// is one wasted request.)
func expectedDigest(ref image.Reference, st *store.Store) (v1.Hash, bool) {
	if r, err := name.NewDigest(ref.Name); err == nil {
		d, err := v1.NewHash(r.DigestStr())
		return d, err == nil
	}
	if st == nil {
		return v1.Hash{}, false
	}
	refs, err := st.Refs()
	if err != nil {
		return v1.Hash{}, false
	}
	d, ok := refs[store.RefName(ref)]
	return d, ok
}

// resolve fetches what the reference names once, has it verified, and
// descends from an index to the platform's manifest by the digest the
// verified index bytes give. It returns the image manifest and its
// digest, computed here from the bytes.
func resolve(ctx context.Context, ref image.Reference, src source, sigs signing.Source, o *Options) (d v1.Hash, raw []byte, mt types.MediaType, err error) {
	t, err := named(ctx, ref, src, sigs, o)
	if err != nil {
		return d, nil, "", err
	}
	if !isIndex(t.MediaType) {
		return t.Digest, t.Manifest, t.MediaType, nil
	}
	wrap := func(err error) error { return fmt.Errorf("image %s@%s: %w", ref, t.Digest, err) }
	p := platformOf(o)
	desc, err := pickPlatform(t.Manifest, p)
	if err != nil {
		return d, nil, "", wrap(err)
	}
	if raw, mt, err = src.manifest(ctx, &desc.Digest); err != nil {
		return d, nil, "", wrap(err)
	}
	if int64(len(raw)) > store.MaxManifestSize {
		return d, nil, "", wrap(fmt.Errorf("manifest larger than %d bytes: %w", store.MaxManifestSize, image.ErrUnsupported))
	}
	if got, _, _ := v1.SHA256(bytes.NewReader(raw)); got != desc.Digest {
		return d, nil, "", wrap(fmt.Errorf("manifest %s: content has digest %s: %w", desc.Digest, got, image.ErrDigestMismatch))
	}
	if mt, err = classify(raw, mt); err != nil {
		return d, nil, "", wrap(err)
	}
	if isIndex(mt) {
		return d, nil, "", wrap(fmt.Errorf("nested image indexes are not supported: %w", image.ErrUnsupported))
	}
	return desc.Digest, raw, mt, nil
}

// named fetches the manifest or index the reference names, once, digests
// it and calls the verifier, which reads signatures from sigs. Verifier
// errors are returned unwrapped.
func named(ctx context.Context, ref image.Reference, src source, sigs signing.Source, o *Options) (Target, error) {
	raw, mt, err := src.manifest(ctx, nil)
	if err != nil {
		return Target{}, fmt.Errorf("image %s: %w", ref, err)
	}
	if int64(len(raw)) > store.MaxManifestSize {
		return Target{}, fmt.Errorf("image %s: manifest larger than %d bytes: %w", ref, store.MaxManifestSize, image.ErrUnsupported)
	}
	if mt, err = classify(raw, mt); err != nil {
		return Target{}, fmt.Errorf("image %s: %w", ref, err)
	}
	d, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return Target{}, err
	}
	t := Target{Ref: ref, Scope: src.scope(), Digest: d, MediaType: mt, Manifest: raw, Signatures: sigs}
	if o.Verify != nil {
		start := time.Now()
		err := o.Verify(ctx, t)
		o.Logger.Debug("verified", "image", ref.String(), "digest", d.String(), "elapsed", time.Since(start), "accepted", err == nil)
		if err != nil {
			return Target{}, err
		}
	}
	return t, nil
}
