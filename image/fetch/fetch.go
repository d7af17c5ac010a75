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

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/image/store"
)

// Target is what the verifier judges: the manifest a reference resolved
// to, before anything else of the image is fetched.
type Target struct {
	Ref image.Reference
	// Scope is the name trust policy matches: registry/repository for a
	// registry image, oci:DIR or docker-archive:FILE otherwise.
	Scope    string
	Digest   v1.Hash
	Manifest []byte
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
	// Keychain supplies registry credentials; authn.DefaultKeychain (the
	// Docker config) by default.
	Keychain authn.Keychain
	// Transport is the base HTTP transport, for tests.
	Transport http.RoundTripper
	// Verify, when set, must approve the target before any config or
	// layer is fetched. Package signing provides it.
	Verify func(ctx context.Context, t Target) error
	// Progress receives per-layer progress; nil is quiet.
	Progress Progress
	// Concurrency is the number of layers fetched at once (default 4).
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

	d, raw, mt, err := resolve(ctx, src, &o)
	if err != nil {
		return image.Image{}, fmt.Errorf("image %s: %w", ref, err)
	}
	m, err := parseManifest(raw, mt)
	if err != nil {
		return image.Image{}, fmt.Errorf("image %s@%s: %w", ref, d, err)
	}
	o.Logger.Debug("resolved", "image", ref.String(), "digest", d.String(), "layers", len(m.Layers))
	if o.Verify != nil {
		if err := o.Verify(ctx, Target{Ref: ref, Scope: src.scope(), Digest: d, Manifest: raw}); err != nil {
			return image.Image{}, err
		}
	}
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
		return newRegistrySource(ctx, ref, o)
	}
	return nil, fmt.Errorf("image %s: unknown transport %q: %w", ref, ref.Transport, image.ErrInvalidReference)
}

// resolve fetches the reference's manifest once, descends from an index to
// the platform's manifest, and returns the manifest and its digest,
// computed here from the bytes.
func resolve(ctx context.Context, src source, o *Options) (d v1.Hash, raw []byte, mt types.MediaType, err error) {
	raw, mt, err = src.manifest(ctx, nil)
	if err != nil {
		return d, nil, "", err
	}
	if mt, err = classify(raw, mt); err != nil {
		return d, nil, "", err
	}
	if isIndex(mt) {
		p := HostPlatform()
		if o.Platform != nil {
			p = *o.Platform
		}
		desc, err := pickPlatform(raw, p)
		if err != nil {
			return d, nil, "", err
		}
		if raw, mt, err = src.manifest(ctx, &desc.Digest); err != nil {
			return d, nil, "", err
		}
		if got, _, _ := v1.SHA256(bytes.NewReader(raw)); got != desc.Digest {
			return d, nil, "", fmt.Errorf("manifest %s: content has digest %s: %w", desc.Digest, got, image.ErrDigestMismatch)
		}
		if mt, err = classify(raw, mt); err != nil {
			return d, nil, "", err
		}
		if isIndex(mt) {
			return d, nil, "", fmt.Errorf("nested image indexes are not supported: %w", image.ErrUnsupported)
		}
	}
	if int64(len(raw)) > store.MaxManifestSize {
		return d, nil, "", fmt.Errorf("manifest larger than %d bytes: %w", store.MaxManifestSize, image.ErrUnsupported)
	}
	d, _, err = v1.SHA256(bytes.NewReader(raw))
	return d, raw, mt, err
}
