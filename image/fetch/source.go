package fetch

import (
	"context"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/karman-project/karman/signing"
)

var (
	_ source = (*registrySource)(nil)
	_ source = (*layoutSource)(nil)
	_ source = (*archiveSource)(nil)
)

// source is where an image's manifests and blobs come from.
type source interface {
	// manifest returns the raw bytes and media type of the manifest or
	// index the reference names (d == nil) or of the one with digest d.
	// The media type may be empty when the source does not know it.
	manifest(ctx context.Context, d *v1.Hash) ([]byte, types.MediaType, error)
	// blob opens the bytes of a blob exactly as the manifest describes
	// them. The caller verifies digest and size.
	blob(ctx context.Context, desc v1.Descriptor) (io.ReadCloser, error)
	// scope is the name under which signatures and trust are looked up.
	scope() string
	// signatures reads the image's signatures; nil when the source
	// carries none.
	signatures() signing.Source
	close() error
}
