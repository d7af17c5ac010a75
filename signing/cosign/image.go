package cosign

import (
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// artifact is an OCI image manifest built here, with its config and blobs,
// ready for remote.Write. It is built from raw parts rather than with
// mutate so that existing layers keep their descriptors (annotations) and
// no layer needs a DiffID.
type artifact struct {
	manifest []byte
	config   []byte
	blobs    map[v1.Hash]partial.CompressedLayer
}

var _ partial.CompressedImageCore = (*artifact)(nil)

func (a *artifact) RawManifest() ([]byte, error)        { return a.manifest, nil }
func (a *artifact) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (a *artifact) RawConfigFile() ([]byte, error)      { return a.config, nil }
func (a *artifact) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := a.blobs[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("no blob %s in this manifest", h)
}

// newImage assembles m (whose config is set here from config and
// configType) into a v1.Image whose blobs are those of blobs.
func newImage(m v1.Manifest, config []byte, configType types.MediaType, blobs map[v1.Hash]partial.CompressedLayer) (v1.Image, error) {
	cl := static.NewLayer(config, configType)
	h, err := cl.Digest()
	if err != nil {
		return nil, err
	}
	m.SchemaVersion = 2
	m.MediaType = types.OCIManifestSchema1
	m.Config = v1.Descriptor{MediaType: configType, Size: int64(len(config)), Digest: h}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(raw) > MaxManifestSize {
		return nil, fmt.Errorf("the signature manifest would be %d bytes, more than the %d a verifier reads", len(raw), MaxManifestSize)
	}
	all := map[v1.Hash]partial.CompressedLayer{h: cl}
	for k, l := range blobs {
		all[k] = l
	}
	return partial.CompressedToImage(&artifact{manifest: raw, config: config, blobs: all})
}

// newSigImage is the .sig manifest holding layers: an OCI image config
// listing the layers (uncompressed, so each DiffID is its digest), as the
// go-containerregistry mutations cosign uses write it.
func newSigImage(layers []v1.Descriptor, blobs map[v1.Hash]partial.CompressedLayer) (v1.Image, error) {
	cfg := v1.ConfigFile{RootFS: v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{}}}
	for _, l := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.Digest)
	}
	config, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	return newImage(v1.Manifest{Layers: layers}, config, types.OCIConfigJSON, blobs)
}
