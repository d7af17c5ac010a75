package fetch

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/image/store"
	"github.com/karman-project/karman/signing"
)

// archiveSource reads a `docker save` tarball. The archive has no manifest
// of the distribution kind, so one is made from its manifest.json: an OCI
// manifest whose layers are the archive's layer files as they are stored.
// Uncompressed layers are named by their diffID, which the ingest then
// verifies like any digest.
type archiveSource struct {
	path    string
	f       *os.File
	entries map[string]*io.SectionReader // archive member -> bytes
	blobs   map[v1.Hash]*io.SectionReader
	raw     []byte
}

func newArchiveSource(ref image.Reference) (_ *archiveSource, err error) {
	p, err := filepath.Abs(ref.Name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("docker archive: %w", err)
	}
	s := &archiveSource{path: p, f: f, entries: map[string]*io.SectionReader{}, blobs: map[v1.Hash]*io.SectionReader{}}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	if err := s.index(); err != nil {
		return nil, fmt.Errorf("docker archive %s: %w", p, err)
	}
	if err := s.build(); err != nil {
		return nil, fmt.Errorf("docker archive %s: %w", p, err)
	}
	return s, nil
}

// index records where each regular member's bytes are, without reading them.
func (s *archiveSource) index() error {
	tr := tar.NewReader(s.f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("not a docker archive (%v): %w", err, image.ErrUnsupported)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		off, err := s.f.Seek(0, io.SeekCurrent)
		if err != nil {
			return err
		}
		s.entries[path.Clean(h.Name)] = io.NewSectionReader(s.f, off, h.Size)
	}
}

func (s *archiveSource) member(name string, limit int64) ([]byte, error) {
	sr, ok := s.entries[path.Clean(name)]
	if !ok {
		return nil, fmt.Errorf("archive lacks %s: %w", name, image.ErrUnsupported)
	}
	if sr.Size() > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes: %w", name, limit, image.ErrUnsupported)
	}
	return io.ReadAll(io.NewSectionReader(sr, 0, sr.Size()))
}

func (s *archiveSource) build() error {
	mb, err := s.member("manifest.json", store.MaxManifestSize)
	if err != nil {
		return err
	}
	var entries []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(mb, &entries); err != nil {
		return fmt.Errorf("manifest.json: %v: %w", err, image.ErrUnsupported)
	}
	if len(entries) != 1 {
		return fmt.Errorf("archive holds %d images; karman reads archives of exactly one (docker save IMAGE): %w", len(entries), image.ErrUnsupported)
	}
	e := entries[0]
	cb, err := s.member(e.Config, store.MaxConfigSize)
	if err != nil {
		return err
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(cb))
	if err != nil {
		return fmt.Errorf("config: %v: %w", err, image.ErrUnsupported)
	}
	if len(cfg.RootFS.DiffIDs) != len(e.Layers) {
		return fmt.Errorf("config lists %d layers, manifest.json %d: %w", len(cfg.RootFS.DiffIDs), len(e.Layers), image.ErrUnsupported)
	}
	cd, _, _ := v1.SHA256(bytes.NewReader(cb))
	s.blobs[cd] = io.NewSectionReader(bytes.NewReader(cb), 0, int64(len(cb)))
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: types.OCIConfigJSON, Digest: cd, Size: int64(len(cb))},
	}
	for i, name := range e.Layers {
		sr, ok := s.entries[path.Clean(name)]
		if !ok {
			return fmt.Errorf("archive lacks layer %s: %w", name, image.ErrUnsupported)
		}
		desc, err := describeLayer(sr, cfg.RootFS.DiffIDs[i])
		if err != nil {
			return fmt.Errorf("layer %s: %w", name, err)
		}
		s.blobs[desc.Digest] = sr
		m.Layers = append(m.Layers, desc)
	}
	s.raw, err = json.Marshal(m)
	return err
}

// describeLayer names an archive layer: an uncompressed tar by its diffID
// (checked during ingest), a compressed one by hashing it now.
func describeLayer(sr *io.SectionReader, diffID v1.Hash) (v1.Descriptor, error) {
	head := make([]byte, 4)
	n, _ := sr.ReadAt(head, 0)
	head = head[:n]
	var mt types.MediaType
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		mt = types.OCILayer
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		mt = types.OCILayerZStd
	default:
		return v1.Descriptor{MediaType: types.OCIUncompressedLayer, Digest: diffID, Size: sr.Size()}, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(sr, 0, sr.Size())); err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Digest: v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))}, Size: sr.Size()}, nil
}

func (s *archiveSource) scope() string { return "docker-archive:" + s.path }
func (s *archiveSource) close() error  { return s.f.Close() }

// signatures: a docker archive carries none.
func (s *archiveSource) signatures() signing.Source { return nil }

func (s *archiveSource) manifest(_ context.Context, d *v1.Hash) ([]byte, types.MediaType, error) {
	return s.raw, types.OCIManifestSchema1, nil
}

func (s *archiveSource) blob(_ context.Context, desc v1.Descriptor) (io.ReadCloser, error) {
	sr, ok := s.blobs[desc.Digest]
	if !ok {
		return nil, fmt.Errorf("docker archive %s has no blob %s: %w", s.path, desc.Digest, image.ErrNotFound)
	}
	return io.NopCloser(io.NewSectionReader(sr, 0, sr.Size())), nil
}
