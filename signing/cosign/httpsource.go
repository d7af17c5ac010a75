package cosign

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/karman-project/karman/signing"
)

// maxReferrersIndex bounds a referrers list (API answer or fallback tag).
const maxReferrersIndex = 4 * MaxManifestSize

// httpSource reads signatures with plain distribution-API requests through
// an already authenticated transport: one bounded request per manifest,
// blob or referrers list, where go-containerregistry's puller would first
// ask for the size with a HEAD. Verification sits on the path of every
// fetch, so round trips count.
type httpSource struct {
	repo   name.Repository
	client *http.Client
}

var _ signing.NamedSource = (*httpSource)(nil)

// RepositoryName is the repository's full name.
func (s *httpSource) RepositoryName() string { return s.repo.Name() }

// HTTPSource implements signing.Source over the registry repository repo
// through rt, a transport already authenticated for pulling from repo (as
// go-containerregistry's transport.NewWithContext returns). Bodies are
// read up to the caller's limit and checked against digests; a 404 is
// signing.ErrNotFound.
func HTTPSource(repo name.Repository, rt http.RoundTripper) signing.Source {
	return &httpSource{repo: repo, client: &http.Client{Transport: rt}}
}

var manifestAccept = strings.Join([]string{
	string(types.OCIManifestSchema1), string(types.OCIImageIndex),
	string(types.DockerManifestSchema2), string(types.DockerManifestList),
}, ",")

// get sends one GET and returns the body, at most limit bytes, and the
// response's content type.
func (s *httpSource) get(ctx context.Context, kind, ref, accept string, limit int64) ([]byte, types.MediaType, error) {
	u := url.URL{Scheme: s.repo.Scheme(), Host: s.repo.RegistryStr(), Path: fmt.Sprintf("/v2/%s/%s/%s", s.repo.RepositoryStr(), kind, ref)}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, "", err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, "", fmt.Errorf("%s %s: %w", strings.TrimSuffix(kind, "s"), ref, signing.ErrNotFound)
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return nil, "", err
	}
	if resp.ContentLength > limit {
		return nil, "", fmt.Errorf("%s %s is %d bytes, more than the %d bytes allowed: %w", strings.TrimSuffix(kind, "s"), ref, resp.ContentLength, limit, signing.ErrMalformed)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, "", err
	}
	if int64(len(b)) > limit {
		return nil, "", fmt.Errorf("%s %s is more than the %d bytes allowed: %w", strings.TrimSuffix(kind, "s"), ref, limit, signing.ErrMalformed)
	}
	return b, types.MediaType(resp.Header.Get("Content-Type")), nil
}

func (s *httpSource) Manifest(ctx context.Context, ref string, limit int64) ([]byte, types.MediaType, error) {
	var want *v1.Hash
	if strings.Contains(ref, ":") {
		h, err := v1.NewHash(ref)
		if err != nil {
			return nil, "", fmt.Errorf("manifest %q: %v: %w", ref, err, signing.ErrMalformed)
		}
		want = &h
	} else if ref == "" || strings.ContainsAny(ref, "/@") {
		return nil, "", fmt.Errorf("manifest %q: not a tag: %w", ref, signing.ErrMalformed)
	}
	b, mt, err := s.get(ctx, "manifests", ref, manifestAccept, limit)
	if err != nil {
		return nil, "", err
	}
	if want != nil {
		if err := checkBytes(*want, b); err != nil {
			return nil, "", err
		}
	}
	if inner := mediaTypeField(b); inner != "" {
		mt = inner
	}
	return b, mt, nil
}

func (s *httpSource) Blob(ctx context.Context, d v1.Hash, limit int64) ([]byte, error) {
	b, _, err := s.get(ctx, "blobs", d.String(), "", limit)
	if err != nil {
		return nil, err
	}
	if err := checkBytes(d, b); err != nil {
		return nil, err
	}
	return b, nil
}

// Referrers asks the referrers API and, at the same time, reads the
// sha256-<hex> fallback tag that registries without the API (and clients
// writing to them) keep: the answer of the API wins when it is an index,
// and asking both at once saves a round trip where there is none.
func (s *httpSource) Referrers(ctx context.Context, d v1.Hash) ([]v1.Descriptor, error) {
	type answer struct {
		b   []byte
		mt  types.MediaType
		err error
	}
	fallback := make(chan answer, 1)
	go func() {
		b, mt, err := s.get(ctx, "manifests", d.Algorithm+"-"+d.Hex, manifestAccept, maxReferrersIndex)
		fallback <- answer{b, mt, err}
	}()
	b, mt, err := s.get(ctx, "referrers", d.String(), string(types.OCIImageIndex), maxReferrersIndex)
	if err != nil || !strings.HasPrefix(string(mt), string(types.OCIImageIndex)) {
		a := <-fallback
		if a.err != nil {
			if isNotFound(a.err) {
				return nil, nil
			}
			return nil, a.err
		}
		b = a.b
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("referrers of %s: %v: %w", d, err, signing.ErrMalformed)
	}
	return idx.Manifests, nil
}

func checkBytes(d v1.Hash, b []byte) error {
	if d.Algorithm != "sha256" {
		return fmt.Errorf("digest %s: only sha256 is supported: %w", d, signing.ErrMalformed)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != d.Hex {
		return fmt.Errorf("content of %s has digest sha256:%s: %w", d, got, signing.ErrMalformed)
	}
	return nil
}

func isNotFound(err error) bool { return errors.Is(err, signing.ErrNotFound) }

// mediaTypeField reads the mediaType member a manifest or index carries.
func mediaTypeField(b []byte) types.MediaType {
	var probe struct {
		MediaType types.MediaType `json:"mediaType"`
	}
	if json.Unmarshal(b, &probe) != nil {
		return ""
	}
	return probe.MediaType
}
