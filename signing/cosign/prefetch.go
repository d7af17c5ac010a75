package cosign

import (
	"context"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/karman-project/karman/signing"
)

// Prefetch starts, in the background, the request that VerifyFirst begins
// with for the image digest d: the manifest of the tag sha256-<hex>.sig.
// It returns a Source that answers that request from the lookup already
// under way and passes every other request to src. (The referrers are
// not prefetched: VerifyFirst reads them only when the tag holds no good
// signature, and a second concurrent request slows the first on a loaded
// host.)
//
// A fetch uses it when it knows the digest before the registry confirms
// it (a reference by digest, or the digest stored under the reference's
// name), so that the signature lookups overlap the manifest request
// instead of following it. Nothing is decided from a prefetched answer
// before Verify asks for it, and Verify asks only for the digest it
// computed from the manifest: when that is another digest (the tag moved),
// its requests go to src and the prefetch is wasted, not trusted.
//
// The lookups run under ctx; cancel it to end them once the fetch is over.
func Prefetch(ctx context.Context, src signing.Source, d v1.Hash) signing.Source {
	p := &prefetched{Source: src, tag: SigTag(d)}
	p.sig.start(func() { p.sig.b, p.sig.mt, p.sig.err = src.Manifest(ctx, p.tag, MaxManifestSize) })
	if n, ok := src.(signing.NamedSource); ok {
		return &namedPrefetched{prefetched: p, name: n.RepositoryName()}
	}
	return p
}

// lookup is one background request and its answer.
type lookup struct {
	done chan struct{}
	b    []byte
	mt   types.MediaType
	err  error
}

func (l *lookup) start(f func()) {
	l.done = make(chan struct{})
	go func() {
		defer close(l.done)
		f()
	}()
}

// wait blocks until the answer is in, or ctx ends.
func (l *lookup) wait(ctx context.Context) error {
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type prefetched struct {
	signing.Source
	tag  string
	mu   sync.Mutex
	used bool
	sig  lookup
}

// take reports whether the prefetched answer may serve this request: it
// is handed out once (a second identical request goes to the registry, as
// it would without a prefetch).
func (p *prefetched) take() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.used {
		return false
	}
	p.used = true
	return true
}

func (p *prefetched) Manifest(ctx context.Context, ref string, limit int64) ([]byte, types.MediaType, error) {
	if ref != p.tag || limit != MaxManifestSize || !p.take() {
		return p.Source.Manifest(ctx, ref, limit)
	}
	if err := p.sig.wait(ctx); err != nil {
		return nil, "", err
	}
	return p.sig.b, p.sig.mt, p.sig.err
}

// namedPrefetched keeps the repository name of a NamedSource visible, so
// that verification still rebuilds simple-signing payloads locally.
type namedPrefetched struct {
	*prefetched
	name string
}

func (p *namedPrefetched) RepositoryName() string { return p.name }
