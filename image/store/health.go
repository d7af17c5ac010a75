package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/image"
)

// BrokenError says that a stored image cannot be used, which of its
// blobs is to blame, and how to repair it. It is an image.ErrBroken and
// also matches the cause (image.ErrNotFound for a missing blob,
// image.ErrDigestMismatch for a corrupt one).
type BrokenError struct {
	// Digest is the image's manifest digest; Names its names.
	Digest v1.Hash
	Names  []string
	// Role of the damaged blob: "manifest", "config" or "layer".
	Role string
	Blob v1.Hash
	// Reason completes "<role> blob <digest> ...": "is missing", "is
	// corrupt: ...", "is not extracted", "cannot be parsed: ...".
	Reason string
	Err    error
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("image %s is broken: %s; repair it with `%s`", e.image(), e.Problem(), e.Fix())
}

func (e *BrokenError) Unwrap() []error { return []error{image.ErrBroken, e.Err} }

// Problem is what is wrong, without the image's name or the fix.
func (e *BrokenError) Problem() string {
	return fmt.Sprintf("%s blob %s %s", e.Role, e.Blob, e.Reason)
}

// Fix is the command line that repairs the image: remove it, fetch it
// again. Fetch replaces a corrupt manifest or config after checking
// what it downloads against the digest.
func (e *BrokenError) Fix() string {
	if len(e.Names) == 0 {
		return fmt.Sprintf("karman image rm %s && karman fetch REFERENCE", e.Digest)
	}
	return fmt.Sprintf("karman image rm %s && karman fetch %s", e.Names[0], e.Names[0])
}

func (e *BrokenError) image() string {
	if len(e.Names) == 0 {
		return e.Digest.String()
	}
	return fmt.Sprintf("%s (%s)", strings.Join(e.Names, ", "), shortHex(e.Digest))
}

func shortHex(d v1.Hash) string {
	if len(d.Hex) > 12 {
		return d.Hex[:12]
	}
	return d.Hex
}

// errNotExtracted: a layer blob is committed but not extracted.
var errNotExtracted = fmt.Errorf("layer is not extracted: %w", image.ErrNotFound)

// broken makes the BrokenError of image d whose role blob failed with err.
func (s *Store) broken(d v1.Hash, role string, blob v1.Hash, err error) *BrokenError {
	e := &BrokenError{Digest: d, Role: role, Blob: blob, Err: err, Names: s.namesOf(d)}
	var ce *CorruptError
	switch {
	case errors.As(err, &ce):
		e.Reason = fmt.Sprintf("is corrupt (its %d bytes have digest %s)", ce.Size, ce.Got)
	case err == errNotExtracted:
		e.Reason = "is not extracted"
	case errors.Is(err, image.ErrNotFound):
		e.Reason = "is missing"
	default:
		e.Reason = "cannot be parsed: " + err.Error()
	}
	return e
}

// namesOf returns the names of image d, sorted; none if the refs index
// cannot be read.
func (s *Store) namesOf(d v1.Hash) []string {
	refs, err := s.Refs()
	if err != nil {
		return nil
	}
	var names []string
	for n, rd := range refs {
		if rd == d {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// Manifest returns the parsed manifest d. Its errors are *BrokenError.
func (s *Store) Manifest(d v1.Hash) (*v1.Manifest, error) {
	b, err := s.ReadBlob(d, MaxManifestSize)
	if err != nil {
		return nil, s.broken(d, "manifest", d, err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(b))
	if err != nil {
		return nil, s.broken(d, "manifest", d, err)
	}
	return m, nil
}

// Config returns the parsed image config of manifest m.
func (s *Store) Config(m *v1.Manifest) (*v1.ConfigFile, error) {
	b, err := s.ReadBlob(m.Config.Digest, MaxConfigSize)
	if err != nil {
		return nil, err
	}
	var c v1.ConfigFile
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	return &c, nil
}

// Load returns the manifest and config of stored image d once it has
// checked that the image is usable: manifest and config intact, every
// layer blob committed and extracted. Its errors are *BrokenError, which
// name the image, the blob and the fix. (Layer blobs are not hashed
// again here: `image check` does that.)
func (s *Store) Load(d v1.Hash) (*v1.Manifest, *v1.ConfigFile, error) {
	m, err := s.Manifest(d)
	if err != nil {
		return nil, nil, err
	}
	c, err := s.Config(m)
	if err != nil {
		return nil, nil, s.broken(d, "config", m.Config.Digest, err)
	}
	for _, l := range m.Layers {
		if !s.HasBlob(l.Digest) {
			return nil, nil, s.broken(d, "layer", l.Digest, image.ErrNotFound)
		}
		if !s.HasLayer(l.Digest) {
			return nil, nil, s.broken(d, "layer", l.Digest, errNotExtracted)
		}
	}
	return m, c, nil
}
