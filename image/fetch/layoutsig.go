package fetch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/karman-project/karman/image/store"
	"github.com/karman-project/karman/internal/limitio"
	"github.com/karman-project/karman/signing"
)

// maxLayoutEntries bounds the manifests of index.json opened when looking
// for referrers.
const maxLayoutEntries = 1024

// maxReferrerManifest bounds a manifest opened to read its subject.
const maxReferrerManifest = 256 << 10

// layoutSignatures reads signatures kept in an OCI image layout, as a
// registry keeps them: a tag is the org.opencontainers.image.ref.name
// annotation of an index.json entry (so the .sig manifest of a digest is
// the entry named sha256-<hex>.sig), and the referrers of a digest are the
// manifests listed in index.json whose subject is that digest, plus those
// of a referrers index tagged sha256-<hex>.
type layoutSignatures struct{ dir string }

var _ signing.Source = layoutSignatures{}

func (s *layoutSource) signatures() signing.Source { return layoutSignatures{dir: s.dir} }

func (l layoutSignatures) index() (*v1.IndexManifest, error) {
	b, err := readLimited(filepath.Join(l.dir, "index.json"), store.MaxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: index.json: %w", l.dir, err)
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: index.json: %v: %w", l.dir, err, signing.ErrMalformed)
	}
	return idx, nil
}

// Manifest returns the manifest tagged ref in index.json, or the blob with
// digest ref ("sha256:...").
func (l layoutSignatures) Manifest(_ context.Context, ref string, limit int64) ([]byte, types.MediaType, error) {
	if strings.HasPrefix(ref, "sha256:") {
		d, err := v1.NewHash(ref)
		if err != nil {
			return nil, "", fmt.Errorf("manifest %q: %v: %w", ref, err, signing.ErrMalformed)
		}
		b, err := l.Blob(context.Background(), d, limit)
		if err != nil {
			return nil, "", err
		}
		return b, mediaTypeOf(b), nil
	}
	idx, err := l.index()
	if err != nil {
		return nil, "", err
	}
	for _, m := range idx.Manifests {
		if m.Annotations[refNameAnnotation] == ref {
			b, err := l.Blob(context.Background(), m.Digest, limit)
			if err != nil {
				return nil, "", err
			}
			return b, m.MediaType, nil
		}
	}
	return nil, "", fmt.Errorf("OCI layout %s has no manifest tagged %s: %w", l.dir, ref, signing.ErrNotFound)
}

// Referrers lists the manifests of index.json whose subject is d.
func (l layoutSignatures) Referrers(ctx context.Context, d v1.Hash) ([]v1.Descriptor, error) {
	idx, err := l.index()
	if err != nil {
		return nil, err
	}
	var out []v1.Descriptor
	seen := map[v1.Hash]bool{}
	entries := idx.Manifests
	// The tag fallback of registries without the referrers API.
	fallback := d.Algorithm + "-" + d.Hex
	for _, m := range idx.Manifests {
		if m.Annotations[refNameAnnotation] != fallback || !isIndex(m.MediaType) {
			continue
		}
		b, err := l.Blob(ctx, m.Digest, maxReferrerManifest)
		if err != nil {
			return nil, err
		}
		ri, err := v1.ParseIndexManifest(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("OCI layout %s: referrers index %s: %v: %w", l.dir, m.Digest, err, signing.ErrMalformed)
		}
		entries = append(entries, ri.Manifests...)
	}
	for i, m := range entries {
		if i >= maxLayoutEntries {
			break
		}
		if seen[m.Digest] || (m.MediaType != types.OCIManifestSchema1 && m.MediaType != "") {
			continue
		}
		seen[m.Digest] = true
		b, err := l.Blob(ctx, m.Digest, maxReferrerManifest)
		if errors.Is(err, signing.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var probe struct {
			ArtifactType types.MediaType   `json:"artifactType"`
			Config       v1.Descriptor     `json:"config"`
			Subject      *v1.Descriptor    `json:"subject"`
			Annotations  map[string]string `json:"annotations"`
		}
		if json.Unmarshal(b, &probe) != nil || probe.Subject == nil || probe.Subject.Digest != d {
			continue
		}
		at := probe.ArtifactType
		if at == "" {
			at = probe.Config.MediaType
		}
		out = append(out, v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: m.Digest, Size: int64(len(b)), ArtifactType: string(at), Annotations: probe.Annotations})
	}
	return out, nil
}

// Blob returns blob d of the layout, checked against its digest.
func (l layoutSignatures) Blob(_ context.Context, d v1.Hash, limit int64) ([]byte, error) {
	if _, err := store.ParseDigest(d.String()); err != nil {
		return nil, fmt.Errorf("%v: %w", err, signing.ErrMalformed)
	}
	b, err := readLimited(filepath.Join(l.dir, "blobs", d.Algorithm, d.Hex), limit)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("OCI layout %s lacks blob %s: %w", l.dir, d, signing.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: blob %s: %w", l.dir, d, err)
	}
	if got, _, _ := v1.SHA256(bytes.NewReader(b)); got != d {
		return nil, fmt.Errorf("OCI layout %s: blob %s has digest %s: %w", l.dir, d, got, signing.ErrMalformed)
	}
	return b, nil
}

// readLimited reads a file of the layout, refusing more than limit bytes
// as a malformed signature object.
func readLimited(path string, limit int64) ([]byte, error) {
	b, err := limitio.ReadFile(path, limit)
	if errors.Is(err, limitio.ErrTooLarge) {
		err = fmt.Errorf("%w: %w", err, signing.ErrMalformed)
	}
	return b, err
}
