package fetch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/image/store"
)

const refNameAnnotation = "org.opencontainers.image.ref.name"

// layoutSource reads an OCI image layout directory.
type layoutSource struct {
	dir string
	tag string
}

func newLayoutSource(ref image.Reference) (*layoutSource, error) {
	dir, err := filepath.Abs(ref.Name)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
		return nil, fmt.Errorf("%s is not an OCI image layout (no oci-layout file); give the directory that holds index.json: %w", dir, image.ErrNotFound)
	}
	return &layoutSource{dir: dir, tag: ref.Tag}, nil
}

func (s *layoutSource) scope() string { return "oci:" + s.dir }
func (s *layoutSource) close() error  { return nil }

func (s *layoutSource) manifest(_ context.Context, d *v1.Hash) ([]byte, types.MediaType, error) {
	if d != nil {
		b, err := s.readBlob(*d, store.MaxManifestSize)
		if err != nil {
			return nil, "", err
		}
		return b, mediaTypeOf(b), nil
	}
	b, err := os.ReadFile(filepath.Join(s.dir, "index.json"))
	if err != nil {
		return nil, "", fmt.Errorf("OCI layout %s: %w", s.dir, err)
	}
	idx, err := v1.ParseIndexManifest(strings.NewReader(string(b)))
	if err != nil {
		return nil, "", fmt.Errorf("OCI layout %s: index.json: %v: %w", s.dir, err, image.ErrUnsupported)
	}
	var picked []v1.Descriptor
	var tags []string
	for _, m := range idx.Manifests {
		t := m.Annotations[refNameAnnotation]
		if t != "" {
			tags = append(tags, t)
		}
		if s.tag == "" || t == s.tag {
			picked = append(picked, m)
		}
	}
	sort.Strings(tags)
	if s.tag == "" && len(picked) > 1 {
		picked = s.images(picked)
	}
	switch {
	case len(picked) == 1:
	case len(picked) == 0:
		return nil, "", fmt.Errorf("OCI layout %s has no image tagged %q (tags: %s); use oci:%s:TAG: %w", s.dir, s.tag, strings.Join(tags, ", "), s.dir, image.ErrNotFound)
	default:
		return nil, "", fmt.Errorf("OCI layout %s holds %d images; pick one with oci:%s:TAG (tags: %s): %w", s.dir, len(picked), s.dir, strings.Join(tags, ", "), image.ErrInvalidReference)
	}
	dg, err := store.ParseDigest(picked[0].Digest.String())
	if err != nil {
		return nil, "", fmt.Errorf("OCI layout %s: %w", s.dir, err)
	}
	b, err = s.readBlob(dg, store.MaxManifestSize)
	if err != nil {
		return nil, "", err
	}
	return b, picked[0].MediaType, nil
}

// sigTag matches the tags under which signatures are kept: sha256-<hex>.sig
// (simple signing), sha256-<hex> (referrers index), and cosign's .att and
// .sbom.
// isSigTag tells the tags cosign keeps beside an image in a layout:
// sha256-<hex>, optionally with .sig, .att or .sbom.
func isSigTag(t string) bool {
	hex, ok := strings.CutPrefix(t, "sha256-")
	if !ok {
		return false
	}
	for _, suffix := range []string{".sig", ".att", ".sbom"} {
		if h, ok := strings.CutSuffix(hex, suffix); ok {
			hex = h
			break
		}
	}
	return store.IsSHA256Hex(hex)
}

// images drops from entries the signatures kept beside the images: those
// tagged like signatures, and manifests with a subject (referrers).
func (s *layoutSource) images(entries []v1.Descriptor) []v1.Descriptor {
	var out []v1.Descriptor
	for _, m := range entries {
		if isSigTag(m.Annotations[refNameAnnotation]) {
			continue
		}
		if b, err := s.readBlob(m.Digest, store.MaxManifestSize); err == nil {
			var probe struct {
				Subject *v1.Descriptor `json:"subject"`
			}
			if json.Unmarshal(b, &probe) == nil && probe.Subject != nil {
				continue
			}
		}
		out = append(out, m)
	}
	return out
}

func (s *layoutSource) readBlob(d v1.Hash, limit int64) ([]byte, error) {
	rc, err := s.blob(context.Background(), v1.Descriptor{Digest: d})
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: blob %s: %w", s.dir, d, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("OCI layout %s: manifest %s is larger than %d bytes: %w", s.dir, d, limit, image.ErrUnsupported)
	}
	return b, nil
}

func (s *layoutSource) blob(_ context.Context, desc v1.Descriptor) (io.ReadCloser, error) {
	d, err := store.ParseDigest(desc.Digest.String())
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(s.dir, "blobs", d.Algorithm, d.Hex))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("OCI layout %s lacks blob %s; the layout is incomplete: %w", s.dir, d, image.ErrNotFound)
	}
	return f, err
}

// mediaTypeOf reads the mediaType field a manifest or index carries.
func mediaTypeOf(b []byte) types.MediaType {
	var probe struct {
		MediaType types.MediaType `json:"mediaType"`
	}
	json.Unmarshal(b, &probe)
	return probe.MediaType
}
