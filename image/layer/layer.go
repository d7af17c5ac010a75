package layer

import (
	"context"
	"errors"
	"io"
	"log/slog"
)

// Stats of one extraction. Files and Bytes count regular files and their
// content; Devices counts character and block devices and FIFOs; Whiteouts
// counts both whiteouts and opaque markers.
type Stats struct {
	Files, Dirs, Symlinks, Hardlinks, Whiteouts, Devices int
	Bytes                                                int64
}

// Options for Extract. The zero value is the secure default.
type Options struct {
	// Logger gets debug records (dropped xattrs, skipped AUFS metadata,
	// ...). nil means silent.
	Logger *slog.Logger
}

// Unpacker is this package as the image store's store.Unpacker:
// Decompress, then Extract with Options{Logger}.
type Unpacker struct{ Logger *slog.Logger }

// Decompress is Decompress.
func (Unpacker) Decompress(r io.Reader) (io.ReadCloser, error) { return Decompress(r) }

// Extract is Extract, without the statistics.
func (u Unpacker) Extract(ctx context.Context, r io.Reader, dir string) error {
	_, err := Extract(ctx, r, dir, Options{Logger: u.Logger})
	return err
}

var (
	// ErrUnsafePath reports an entry that would reach outside the layer
	// directory: ".." escapes, hardlinks to outside or to directories, a
	// non-directory replacing the layer root.
	ErrUnsafePath = errors.New("unsafe path in layer")
	// ErrUnsupported reports content the extractor does not handle: unknown
	// compression, unsupported tar entry types, malformed whiteouts.
	ErrUnsupported = errors.New("unsupported layer content")
)
