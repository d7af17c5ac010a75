package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/image"
)

// Bounds on the small blobs Karman parses.
const (
	MaxManifestSize = 4 << 20
	MaxConfigSize   = 8 << 20
)

// Image returns the record of the stored image with manifest digest d,
// which must be usable (see Load).
func (s *Store) Image(d v1.Hash) (image.Image, error) {
	m, c, err := s.Load(d)
	if err != nil {
		return image.Image{}, err
	}
	img := image.Image{
		Digest:    d.String(),
		Names:     s.namesOf(d),
		MediaType: string(m.MediaType),
		Config:    m.Config.Digest.String(),
		OS:        c.OS,
		Arch:      c.Architecture,
		Variant:   c.Variant,
		Created:   c.Created.Time,
		Status:    image.StatusOK,
	}
	for i, l := range m.Layers {
		var diff string
		if i < len(c.RootFS.DiffIDs) {
			diff = c.RootFS.DiffIDs[i].String()
		}
		img.Layers = append(img.Layers, image.Layer{Digest: l.Digest.String(), DiffID: diff, Size: l.Size, MediaType: string(l.MediaType)})
		img.Size += l.Size
	}
	return img, nil
}

// Images lists the images that have names, sorted by first name. A
// broken image is listed too, with StatusBroken, its Problem and Fix,
// and what of its manifest could still be read: one damaged image does
// not hide the others.
func (s *Store) Images() ([]image.Image, error) {
	refs, err := s.Refs()
	if err != nil {
		return nil, err
	}
	seen := map[v1.Hash]bool{}
	var out []image.Image
	for _, d := range refs {
		if seen[d] {
			continue
		}
		seen[d] = true
		img, err := s.Image(d)
		var be *BrokenError
		if errors.As(err, &be) {
			img = s.brokenImage(d, be)
		} else if err != nil {
			return nil, fmt.Errorf("image %s: %w", d, err)
		}
		img.Names = img.Names[:0]
		for n, rd := range refs {
			if rd == d {
				img.Names = append(img.Names, n)
			}
		}
		sort.Strings(img.Names)
		out = append(out, img)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Names[0] < out[j].Names[0] })
	return out, nil
}

// brokenImage is the record of broken image d: what its manifest still
// says, if it can be read, and what is wrong.
func (s *Store) brokenImage(d v1.Hash, be *BrokenError) image.Image {
	img := image.Image{
		Digest: d.String(), Names: be.Names, Status: image.StatusBroken,
		Problem: be.Problem(), Fix: be.Fix(),
	}
	if be.Role == "manifest" {
		return img
	}
	if m, err := s.Manifest(d); err == nil {
		img.MediaType, img.Config = string(m.MediaType), m.Config.Digest.String()
		for _, l := range m.Layers {
			img.Layers = append(img.Layers, image.Layer{Digest: l.Digest.String(), Size: l.Size, MediaType: string(l.MediaType)})
			img.Size += l.Size
		}
	}
	return img
}

// RefName is the name under which a fetched reference is recorded.
func RefName(r image.Reference) string {
	switch r.Transport {
	case image.OCILayout, image.DockerArchive:
		if abs, err := filepath.Abs(r.Name); err == nil {
			r.Name = abs
		}
	}
	return r.String()
}

// Resolve finds a stored image by name, by full digest, or by a unique
// prefix (at least 6 hex digits) of its digest.
func (s *Store) Resolve(arg string) (v1.Hash, error) {
	refs, err := s.Refs()
	if err != nil {
		// A full digest needs no name: it still works.
		if d, derr := ParseDigest("sha256:" + strings.TrimPrefix(arg, "sha256:")); derr == nil && s.HasBlob(d) {
			return d, nil
		}
		return v1.Hash{}, fmt.Errorf("image %q cannot be looked up: %w", arg, err)
	}
	if ref, err := image.ParseReference(arg); err == nil {
		if d, ok := refs[RefName(ref)]; ok {
			return d, nil
		}
	}
	hexPart := strings.TrimPrefix(arg, "sha256:")
	if len(hexPart) >= 6 && strings.Trim(hexPart, "0123456789abcdef") == "" {
		if len(hexPart) == 64 {
			if d, err := ParseDigest("sha256:" + hexPart); err == nil && s.HasBlob(d) {
				return d, nil
			}
		}
		var found []v1.Hash
		seen := map[v1.Hash]bool{}
		for _, d := range refs {
			if !seen[d] && strings.HasPrefix(d.Hex, hexPart) {
				seen[d] = true
				found = append(found, d)
			}
		}
		switch len(found) {
		case 1:
			return found[0], nil
		case 0:
		default:
			return v1.Hash{}, fmt.Errorf("image %q is ambiguous: %d images have digests starting with it; give more digits", arg, len(found))
		}
	}
	return v1.Hash{}, fmt.Errorf("image %q is not in the store (see `karman image list`; fetch it with `karman fetch`): %w", arg, image.ErrNotFound)
}

// Untag removes image names: arg as a name removes that name; arg as a
// digest or digest prefix removes every name of that image. Blobs and
// layers stay until GC finds nothing that needs them.
func (s *Store) Untag(ctx context.Context, arg string) (removed []string, d v1.Hash, err error) {
	if d, err = s.Resolve(arg); err != nil {
		return nil, d, err
	}
	name := ""
	if ref, err := image.ParseReference(arg); err == nil {
		name = RefName(ref)
	}
	refs, err := s.Refs()
	if err != nil {
		return nil, d, err
	}
	_, isName := refs[name]
	removed, err = s.RemoveRefs(ctx, func(n string, rd v1.Hash) bool {
		if isName {
			return n == name
		}
		return rd == d
	})
	return removed, d, err
}
