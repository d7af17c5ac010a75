package stage0

import (
	"context"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Fetcher fetches an image into the runtime's image store: only what the
// store lacks, judged by the trust policy before anything is unpacked;
// it returns the image's manifest digest. stage0 links no registry
// client: the caller chooses where fetching runs (package pull fetches
// in this process; the lean karman has karman-full do it).
type Fetcher interface {
	Fetch(ctx context.Context, ref string, o FetchOptions) (v1.Hash, error)
}

// FetchOptions are a pod's --insecure-options that concern fetching.
type FetchOptions struct {
	InsecureHTTP  bool // plain HTTP to the registry
	InsecureTLS   bool // no TLS certificate checks
	InsecureImage bool // no signature verification (a warning each)
}
