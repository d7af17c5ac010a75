package fetch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/image/store"
)

// maxLayers is overlayfs's limit on lower layers.
const maxLayers = 500

var layerTypes = map[types.MediaType]bool{
	types.DockerLayer:             true,
	types.DockerUncompressedLayer: true,
	types.OCILayer:                true,
	types.OCILayerZStd:            true,
	types.OCIUncompressedLayer:    true,
}

func isIndex(mt types.MediaType) bool {
	return mt == types.OCIImageIndex || mt == types.DockerManifestList
}

func isSchema1(raw []byte, mt types.MediaType) bool {
	if mt == types.DockerManifestSchema1 || mt == types.DockerManifestSchema1Signed {
		return true
	}
	var probe struct {
		SchemaVersion int `json:"schemaVersion"`
	}
	return json.Unmarshal(raw, &probe) == nil && probe.SchemaVersion == 1
}

// classify settles the media type of a manifest document: the source's
// word and the document's own mediaType field must agree.
func classify(raw []byte, mt types.MediaType) (types.MediaType, error) {
	if isSchema1(raw, mt) {
		return "", fmt.Errorf("Docker schema 1 manifests are not supported (deprecated since 2017); push the image again with a current client: %w", image.ErrUnsupported)
	}
	inner := mediaTypeOf(raw)
	switch {
	case mt == "" && inner == "":
		// An OCI document may omit mediaType: tell index from manifest by shape.
		var probe struct {
			Manifests json.RawMessage `json:"manifests"`
		}
		json.Unmarshal(raw, &probe)
		if probe.Manifests != nil {
			return types.OCIImageIndex, nil
		}
		return types.OCIManifestSchema1, nil
	case mt == "":
		return inner, nil
	case inner != "" && inner != mt:
		return "", fmt.Errorf("manifest says it is %q but was served as %q: %w", inner, mt, image.ErrUnsupported)
	}
	return mt, nil
}

// pickPlatform chooses the manifest for platform p from an index.
func pickPlatform(raw []byte, p v1.Platform) (v1.Descriptor, error) {
	idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("image index: %v: %w", err, image.ErrUnsupported)
	}
	var have []string
	for _, m := range idx.Manifests {
		if m.Platform == nil {
			continue
		}
		have = append(have, m.Platform.String())
		if m.Platform.Satisfies(p) && !isIndex(m.MediaType) {
			if _, err := store.ParseDigest(m.Digest.String()); err != nil {
				return v1.Descriptor{}, fmt.Errorf("image index: %w", err)
			}
			return m, nil
		}
	}
	return v1.Descriptor{}, fmt.Errorf("image index has no manifest for %s (it has: %v); this host cannot run it: %w", p.String(), have, image.ErrNotFound)
}

// parseManifest validates an image manifest strictly: it comes from a
// hostile source and its digests become file names.
func parseManifest(raw []byte, mt types.MediaType) (*v1.Manifest, error) {
	if mt != types.OCIManifestSchema1 && mt != types.DockerManifestSchema2 {
		return nil, fmt.Errorf("manifest media type %q is not an image manifest: %w", mt, image.ErrUnsupported)
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("manifest: %v: %w", err, image.ErrUnsupported)
	}
	var errs []error
	if m.SchemaVersion != 2 {
		errs = append(errs, fmt.Errorf("schemaVersion %d, want 2", m.SchemaVersion))
	}
	if m.Config.MediaType != types.OCIConfigJSON && m.Config.MediaType != types.DockerConfigJSON {
		errs = append(errs, fmt.Errorf("config media type %q: this is not a container image (perhaps a signature or another artifact)", m.Config.MediaType))
	}
	if _, err := store.ParseDigest(m.Config.Digest.String()); err != nil {
		errs = append(errs, fmt.Errorf("config: %w", err))
	}
	if m.Config.Size <= 0 || m.Config.Size > store.MaxConfigSize {
		errs = append(errs, fmt.Errorf("config size %d is outside 1..%d", m.Config.Size, store.MaxConfigSize))
	}
	if len(m.Layers) > maxLayers {
		errs = append(errs, fmt.Errorf("%d layers, at most %d are supported", len(m.Layers), maxLayers))
	}
	for i, l := range m.Layers {
		if !layerTypes[l.MediaType] {
			errs = append(errs, fmt.Errorf("layer %d: media type %q is not supported (foreign or non-distributable layers are refused)", i, l.MediaType))
		}
		if _, err := store.ParseDigest(l.Digest.String()); err != nil {
			errs = append(errs, fmt.Errorf("layer %d: %w", i, err))
		}
		if l.Size < 0 {
			errs = append(errs, fmt.Errorf("layer %d: negative size %d", i, l.Size))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("invalid manifest: %w: %w", err, image.ErrUnsupported)
	}
	return m, nil
}
