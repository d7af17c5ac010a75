package layer

import (
	"errors"
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

var (
	// ErrUnsafePath reports an entry that would reach outside the layer
	// directory: ".." escapes, hardlinks to outside or to directories, a
	// non-directory replacing the layer root.
	ErrUnsafePath = errors.New("unsafe path in layer")
	// ErrUnsupported reports content the extractor does not handle: unknown
	// compression, unsupported tar entry types, malformed whiteouts.
	ErrUnsupported = errors.New("unsupported layer content")
)
