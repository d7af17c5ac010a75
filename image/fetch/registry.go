package fetch

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/image/registries"
	"github.com/karman-project/karman/signing"
	"github.com/karman-project/karman/signing/cosign"
)

// registrySource reads from a registry over the distribution API. It
// authenticates once and shares the transport between manifest and blob
// requests. ref is where it reads (an endpoint of the registry
// configuration: the reference itself, its location or a mirror); logical
// is the reference the user gave, whose repository is the trust scope.
type registrySource struct {
	ref     name.Reference
	logical name.Repository
	// origin names the registries.conf entry that sent the pull here,
	// for the errors of the reference's manifest; "" when none did.
	origin string
	client *http.Client
	rt     http.RoundTripper
}

// openRegistry opens the endpoint of ref that serves it. With a single
// endpoint that is no mirror (no entry in registries.conf, or one that
// rewrites or marks the reference insecure) it is opened as it is; its
// manifest is requested by the fetch. Otherwise each endpoint is tried in
// order, up to the first that serves ref's manifest: the fetch goes on
// with that one. When every endpoint failed the error names each and why.
func openRegistry(ctx context.Context, ref image.Reference, o *Options) (source, error) {
	logical, err := name.ParseReference(ref.Name)
	if err != nil {
		return nil, fmt.Errorf("image %q: %v: %w", ref.Name, err, image.ErrInvalidReference)
	}
	eps, err := o.Registries.Resolve(ref.Name)
	if err != nil {
		return nil, err
	}
	if ep := eps[0]; len(eps) == 1 && !ep.Mirror {
		s, err := newRegistrySource(ctx, logical.Context(), ep, o)
		switch {
		case err != nil && ep.Path != "":
			return nil, fmt.Errorf("image %s: %s: %w", ref, ep, err)
		case err != nil:
			return nil, err
		case ep.Path != "":
			s.origin = ep.String()
		}
		return s, nil
	}
	var failed []error
	for _, ep := range eps {
		s, err := newRegistrySource(ctx, logical.Context(), ep, o)
		if err == nil {
			var raw []byte
			var mt types.MediaType
			if raw, mt, err = s.manifest(ctx, nil); err == nil {
				if len(failed) > 0 {
					o.Logger.Warn("pulling from the next place registries.conf names", "image", ref.String(), "from", ep.String(), "failed", (&endpointsError{ref: ref, errs: failed}).causes())
				}
				o.Logger.Debug("endpoint", "image", ref.String(), "from", ep.String())
				return &openedSource{registrySource: s, raw: raw, mt: mt}, nil
			}
			s.close()
		}
		if ctx.Err() != nil {
			return nil, err
		}
		failed = append(failed, fmt.Errorf("%s: %w", ep, err))
	}
	return nil, &endpointsError{ref: ref, errs: failed, primary: !eps[len(eps)-1].Mirror}
}

// endpointsError is the failure of every endpoint of a pull, in order.
type endpointsError struct {
	ref     image.Reference
	errs    []error
	primary bool // the last endpoint tried is the entry's location
}

func (e *endpointsError) causes() string {
	s := make([]string, len(e.errs))
	for i, err := range e.errs {
		s[i] = err.Error()
	}
	return strings.Join(s, "; ")
}

func (e *endpointsError) Error() string {
	if e.primary {
		return fmt.Sprintf("image %s: no mirror and not the location registries.conf names served it: %s", e.ref, e.causes())
	}
	return fmt.Sprintf("image %s: no mirror registries.conf names served it, and its entry names no location to try after them: %s; fix the mirrors, or write location = \"...\" in the entry to pull from there when they fail", e.ref, e.causes())
}

func (e *endpointsError) Unwrap() []error { return e.errs }

// openedSource is a registry source whose first manifest request (the
// reference's) was made when it was chosen.
type openedSource struct {
	*registrySource
	raw  []byte
	mt   types.MediaType
	used bool
}

func (s *openedSource) manifest(ctx context.Context, d *v1.Hash) ([]byte, types.MediaType, error) {
	if d == nil && !s.used {
		s.used = true
		return s.raw, s.mt, nil
	}
	return s.registrySource.manifest(ctx, d)
}

// newRegistrySource opens the registry of ep: credentials for its
// repository, TLS and plain HTTP as ep and the options allow.
func newRegistrySource(ctx context.Context, logical name.Repository, ep registries.Endpoint, o *Options) (*registrySource, error) {
	insecure := ep.Insecure
	var opts []name.Option
	if insecure || o.InsecureHTTP {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ep.Ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("image %q: %v: %w", ep.Ref, err, image.ErrInvalidReference)
	}
	repo := r.Context()
	kc := o.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	auth, err := kc.Resolve(repo)
	if err != nil {
		return nil, fmt.Errorf("registry %s: reading credentials: %w", repo.RegistryStr(), err)
	}
	base := o.Transport
	if base == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 16
		if o.InsecureTLS || insecure {
			t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for with --insecure-options=tls or insecure = true in registries.conf
		}
		base = t
	}
	base = &httpGuard{inner: base, allowHTTP: o.InsecureHTTP || insecure}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, base, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, registryError(repo.RegistryStr(), ep.Ref, err)
	}
	return &registrySource{ref: r, logical: logical, rt: rt, client: &http.Client{Transport: rt}}, nil
}

// scope is the repository the user named, wherever the image is read.
func (s *registrySource) scope() string { return s.logical.Name() }
func (s *registrySource) close() error  { s.client.CloseIdleConnections(); return nil }

// signatures reads the repository's signatures over the transport the
// image itself is fetched with: same credentials, same HTTP rules.
func (s *registrySource) signatures() signing.Source {
	return cosign.HTTPSource(s.ref.Context(), s.rt)
}

func (s *registrySource) manifest(ctx context.Context, d *v1.Hash) ([]byte, types.MediaType, error) {
	ref := s.ref
	if d != nil {
		ref = s.ref.Context().Digest(d.String())
	}
	desc, err := remote.Get(ref, remote.WithContext(ctx), remote.WithTransport(s.rt))
	if err != nil {
		err = registryError(s.ref.Context().RegistryStr(), ref.String(), err)
		if s.origin != "" && d == nil {
			err = fmt.Errorf("%s: %w", s.origin, err)
		}
		return nil, "", err
	}
	if pinned, ok := ref.(name.Digest); ok {
		if got, _, _ := v1.SHA256(bytes.NewReader(desc.Manifest)); got.String() != pinned.DigestStr() {
			return nil, "", fmt.Errorf("registry %s served %s with digest %s: %w", s.ref.Context().RegistryStr(), ref, got, image.ErrDigestMismatch)
		}
	}
	return desc.Manifest, desc.MediaType, nil
}

func (s *registrySource) blob(ctx context.Context, desc v1.Descriptor) (io.ReadCloser, error) {
	repo := s.ref.Context()
	u := url.URL{Scheme: repo.Scheme(), Host: repo.RegistryStr(), Path: fmt.Sprintf("/v2/%s/blobs/%s", repo.RepositoryStr(), desc.Digest)}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, registryError(repo.RegistryStr(), desc.Digest.String(), err)
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		resp.Body.Close()
		return nil, registryError(repo.RegistryStr(), repo.Name()+"@"+desc.Digest.String(), err)
	}
	return resp.Body, nil
}

// registryError turns transport failures into Karman's error classes with
// a message that says what to do.
func registryError(registry, what string, err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch terr.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("registry %s refused access to %s (HTTP %d); log in with `docker login %s` or check ~/.docker/config.json: %w",
				registry, what, terr.StatusCode, registry, image.ErrUnauthorized)
		case http.StatusNotFound:
			return fmt.Errorf("%s not found in registry %s; check the repository and tag: %w", what, registry, image.ErrNotFound)
		}
		for _, d := range terr.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
				return fmt.Errorf("%s not found in registry %s; check the repository and tag: %w", what, registry, image.ErrNotFound)
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return fmt.Errorf("registry %s refused access to %s; log in with `docker login %s`: %w", registry, what, registry, image.ErrUnauthorized)
			}
		}
		return fmt.Errorf("registry %s answered HTTP %d for %s: %w", registry, terr.StatusCode, what, err)
	}
	if errors.Is(err, image.ErrInsecure) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var nerr net.Error
	var dnsErr *net.DNSError
	var opErr *net.OpError
	if errors.As(err, &dnsErr) || errors.As(err, &opErr) || errors.As(err, &nerr) {
		return fmt.Errorf("cannot reach registry %s (%v); check the registry name, that it is running, and the network: %w", registry, err, image.ErrUnreachable)
	}
	return fmt.Errorf("registry %s: %s: %w", registry, what, err)
}

// httpGuard refuses plain HTTP except to loopback registries, unless the
// user asked for it with --insecure-options=http.
type httpGuard struct {
	inner     http.RoundTripper
	allowHTTP bool
}

func (g *httpGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !g.allowHTTP && !isLoopback(req.URL.Hostname()) {
		return nil, fmt.Errorf("plain HTTP to registry %s refused: only loopback registries may skip TLS; pass --insecure-options=http if this registry has no TLS: %w", req.URL.Host, image.ErrInsecure)
	}
	return g.inner.RoundTrip(req)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
