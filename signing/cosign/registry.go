package cosign

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/karman-project/karman/signing"
)

// registrySource reads signatures from a registry repository.
type registrySource struct {
	repo   name.Repository
	puller *remote.Puller
	err    error // from remote.NewPuller, returned by every call
}

var _ signing.Source = (*registrySource)(nil)

// RegistrySource implements signing.Source over the registry repository
// repo with go-containerregistry's remote. One remote.Puller made from opts
// is shared by all calls (authentication and transport reused). Referrers
// uses the referrers API and, where the registry has none, the
// sha256-<hex> tag fallback (unless opts disable it). A 404 is
// signing.ErrNotFound; a manifest or blob over its limit is
// signing.ErrMalformed.
func RegistrySource(repo name.Repository, opts ...remote.Option) signing.Source {
	p, err := remote.NewPuller(opts...)
	return &registrySource{repo: repo, puller: p, err: err}
}

// RepositoryName is the repository's full name.
func (s *registrySource) RepositoryName() string { return s.repo.Name() }

// Manifest reads the manifest ref (a tag, or a digest "sha256:...") by
// digest after a HEAD request, so that the size is known before the body is
// read and the bytes are checked against the digest.
func (s *registrySource) Manifest(ctx context.Context, ref string, limit int64) ([]byte, types.MediaType, error) {
	if s.err != nil {
		return nil, "", s.err
	}
	var r name.Reference
	if strings.Contains(ref, ":") {
		h, err := v1.NewHash(ref)
		if err != nil {
			return nil, "", fmt.Errorf("manifest %q: %v: %w", ref, err, signing.ErrMalformed)
		}
		r = s.repo.Digest(h.String())
	} else {
		if ref == "" || strings.ContainsAny(ref, "/@") {
			return nil, "", fmt.Errorf("manifest %q: not a tag: %w", ref, signing.ErrMalformed)
		}
		r = s.repo.Tag(ref)
	}
	desc, err := s.puller.Head(ctx, r)
	if err != nil {
		return nil, "", mapError(err, "manifest "+ref)
	}
	if desc.Size > limit {
		return nil, "", fmt.Errorf("manifest %s is %d bytes, more than the %d allowed: %w", ref, desc.Size, limit, signing.ErrMalformed)
	}
	got, err := s.puller.Get(ctx, s.repo.Digest(desc.Digest.String()))
	if err != nil {
		return nil, "", mapError(err, "manifest "+ref)
	}
	if int64(len(got.Manifest)) > limit {
		return nil, "", fmt.Errorf("manifest %s is %d bytes, more than the %d allowed: %w", ref, len(got.Manifest), limit, signing.ErrMalformed)
	}
	return got.Manifest, got.MediaType, nil
}

// Referrers lists the referrers of d.
func (s *registrySource) Referrers(ctx context.Context, d v1.Hash) ([]v1.Descriptor, error) {
	if s.err != nil {
		return nil, s.err
	}
	idx, err := remote.Referrers(s.repo.Digest(d.String()), remote.Reuse(s.puller), remote.WithContext(ctx))
	if err != nil {
		return nil, mapError(err, "referrers of "+d.String())
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("referrers of %s: %w", d, err)
	}
	return m.Manifests, nil
}

// Blob reads the blob d, at most limit bytes, and checks its digest.
func (s *registrySource) Blob(ctx context.Context, d v1.Hash, limit int64) ([]byte, error) {
	if s.err != nil {
		return nil, s.err
	}
	if d.Algorithm != "sha256" {
		return nil, fmt.Errorf("blob %s: only sha256 digests are supported: %w", d, signing.ErrMalformed)
	}
	l, err := s.puller.Layer(ctx, s.repo.Digest(d.String()))
	if err != nil {
		return nil, mapError(err, "blob "+d.String())
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, mapError(err, "blob "+d.String())
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("blob %s is more than the %d bytes allowed: %w", d, limit, signing.ErrMalformed)
	}
	if err != nil {
		return nil, mapError(err, "blob "+d.String())
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != d.Hex {
		return nil, fmt.Errorf("blob %s does not match its digest: %w", d, signing.ErrMalformed)
	}
	return b, nil
}

// mapError turns a registry's 404 into signing.ErrNotFound.
func mapError(err error, what string) error {
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%s: %v: %w", what, err, signing.ErrNotFound)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// PushSimple signs d with priv in the simple-signing format and pushes the
// signature to repo under the tag sha256-<hex>.sig, keeping the signatures
// already there. The payload's docker-reference is repo's name.
func PushSimple(ctx context.Context, repo name.Repository, d v1.Hash, priv crypto.Signer, opts ...remote.Option) error {
	if err := checkDigest(d); err != nil {
		return err
	}
	opts = append(opts, remote.WithContext(ctx))
	tag := repo.Tag(SigTag(d))
	existing, err := remote.Image(tag, opts...)
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		existing, err = nil, nil
	}
	if err != nil {
		return fmt.Errorf("reading the signatures under %s: %w", tag, err)
	}
	img, _, err := SignSimple(d, repo.Name(), priv, existing)
	if err != nil {
		return err
	}
	if err := remote.Write(tag, img, opts...); err != nil {
		return fmt.Errorf("pushing the signature to %s: %w", tag, err)
	}
	return nil
}

// PushBundle signs the image imageDesc with priv as a sigstore bundle and
// pushes the referrer manifest to repo by digest. go-containerregistry
// keeps the sha256-<hex> referrers tag up to date on registries without
// the referrers API (unless opts disable the tag fallback).
func PushBundle(ctx context.Context, repo name.Repository, imageDesc v1.Descriptor, priv crypto.Signer, opts ...remote.Option) error {
	img, err := SignBundle(imageDesc, priv)
	if err != nil {
		return err
	}
	h, err := img.Digest()
	if err != nil {
		return err
	}
	ref := repo.Digest(h.String())
	if err := remote.Write(ref, img, append(opts, remote.WithContext(ctx))...); err != nil {
		return fmt.Errorf("pushing the signature bundle to %s: %w", ref, err)
	}
	return nil
}
