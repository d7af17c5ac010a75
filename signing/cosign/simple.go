package cosign

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/karman-project/karman/internal/strictjson"
	"github.com/karman-project/karman/signing"
)

// simplePayload is the payload cosign signs in the .sig format, byte for
// byte: encoding/json writes the members in this order.
func simplePayload(dockerRef string, d v1.Hash) ([]byte, error) {
	type identity struct {
		DockerReference string `json:"docker-reference"`
	}
	type image struct {
		DockerManifestDigest string `json:"docker-manifest-digest"`
	}
	type critical struct {
		Identity identity `json:"identity"`
		Image    image    `json:"image"`
		Type     string   `json:"type"`
	}
	return json.Marshal(struct {
		Critical critical       `json:"critical"`
		Optional map[string]any `json:"optional"` // nil: null, as cosign writes it
	}{Critical: critical{
		Identity: identity{DockerReference: dockerRef},
		Image:    image{DockerManifestDigest: d.String()},
		Type:     SimpleSigningType,
	}})
}

// parseSimplePayload parses a simple-signing payload strictly and returns
// the digest it names. The critical part must have exactly the members
// cosign writes; optional may be null, absent or any object (cosign puts
// its -a annotations there; they are not checked).
func parseSimplePayload(b []byte) (string, error) {
	bad := func(err error) (string, error) { return "", errMalformed("simple-signing payload: %v", err) }
	if err := strictjson.Check(b); err != nil {
		return bad(err)
	}
	top, err := object(b, "the payload", []string{"critical", "optional"}, "critical")
	if err != nil {
		return bad(err)
	}
	if opt, ok := top["optional"]; ok && !isNull(opt) && !isKind(opt, '{') {
		return bad(errors.New("optional is neither null nor an object"))
	}
	crit, err := object(top["critical"], "critical", []string{"identity", "image", "type"}, "identity", "image", "type")
	if err != nil {
		return bad(err)
	}
	typ, err := str(crit["type"], "critical.type")
	if err != nil {
		return bad(err)
	}
	if typ != SimpleSigningType {
		return bad(fmt.Errorf("critical.type is %q, not %q", typ, SimpleSigningType))
	}
	id, err := object(crit["identity"], "critical.identity", []string{"docker-reference"}, "docker-reference")
	if err != nil {
		return bad(err)
	}
	if _, err := str(id["docker-reference"], "critical.identity.docker-reference"); err != nil {
		return bad(err)
	}
	img, err := object(crit["image"], "critical.image", []string{"docker-manifest-digest"}, "docker-manifest-digest")
	if err != nil {
		return bad(err)
	}
	d, err := str(img["docker-manifest-digest"], "critical.image.docker-manifest-digest")
	if err != nil {
		return bad(err)
	}
	return d, nil
}

// sigTag looks at the simple-signing signatures under the .sig tag.
func (v *verifier) sigTag(ctx context.Context) error {
	if v.full() {
		return nil
	}
	tag := SigTag(v.d)
	b, mt, err := v.src.Manifest(ctx, tag, MaxManifestSize)
	switch {
	case errors.Is(err, signing.ErrNotFound):
		return nil
	case errors.Is(err, signing.ErrMalformed):
		v.add(FormatSimpleSigning, tag, "", fmt.Errorf("signature manifest: %w", err))
		return nil
	case err != nil:
		return fmt.Errorf("reading the signature tag %s: %w", tag, err)
	}
	m, err := parseManifest(b, mt, true)
	if err != nil {
		v.add(FormatSimpleSigning, tag, "", fmt.Errorf("signature manifest %s: %w", tag, err))
		return nil
	}
	for i, l := range m.Layers {
		if v.full() {
			return nil
		}
		keyID, sigErr, err := v.simpleLayer(ctx, l)
		if err != nil {
			return err
		}
		if sigErr != nil {
			sigErr = fmt.Errorf("%s layer %d: %w", tag, i, sigErr)
		}
		v.add(FormatSimpleSigning, tag, keyID, sigErr)
	}
	return nil
}

// simpleLayer checks one layer of a .sig manifest. sigErr is why this
// signature does not count; err is a registry failure.
func (v *verifier) simpleLayer(ctx context.Context, l v1.Descriptor) (keyID string, sigErr, err error) {
	if l.MediaType != SimpleSigningMediaType {
		return "", errMalformed("media type %q is not %s", l.MediaType, SimpleSigningMediaType), nil
	}
	if l.Size < 0 || l.Size > MaxPayloadSize {
		return "", errMalformed("payload of %d bytes (at most %d allowed)", l.Size, MaxPayloadSize), nil
	}
	b64, ok := l.Annotations[SignatureAnnotation]
	if !ok {
		return "", errMalformed("no %s annotation", SignatureAnnotation), nil
	}
	sig, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", errMalformed("signature annotation: %v", err), nil
	}
	payload, err := v.simplePayload(ctx, l)
	if perSignature(err) {
		return "", fmt.Errorf("payload: %w", err), nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("reading signature payload %s: %w", l.Digest, err)
	}
	if int64(len(payload)) != l.Size {
		return "", errMalformed("payload is %d bytes, its descriptor says %d", len(payload), l.Size), nil
	}
	keyID, sigErr = verifyWithKeys(v.keys, payload, sig)
	if sigErr != nil {
		return "", sigErr, nil
	}
	d, sigErr := parseSimplePayload(payload)
	if sigErr != nil {
		return "", sigErr, nil
	}
	if d != v.d.String() {
		return "", errMalformed("signed by key %s, but the payload is for %s, not %s", shortID(keyID), d, v.d), nil
	}
	return keyID, nil, nil
}

// simplePayload returns the payload of a .sig layer. cosign's payload is
// a function of the repository's name and the image digest: when the
// layer's descriptor has the digest (sha256) and size of that payload as
// rebuilt here, those are its bytes, and the registry round trip for the
// blob is saved; the signature is then checked over them exactly as over
// fetched bytes. Any other payload (another docker-reference, cosign -a
// annotations, a payload for another digest) is read from the registry.
func (v *verifier) simplePayload(ctx context.Context, l v1.Descriptor) ([]byte, error) {
	if src, ok := v.src.(signing.NamedSource); ok {
		b, err := simplePayload(src.RepositoryName(), v.d)
		if err == nil && int64(len(b)) == l.Size && checkBytes(l.Digest, b) == nil {
			return b, nil
		}
	}
	return v.src.Blob(ctx, l.Digest, MaxPayloadSize)
}

// parseManifest parses an image manifest (OCI, or Docker schema 2 when
// docker is set), refusing duplicate members.
func parseManifest(b []byte, mt types.MediaType, docker bool) (*v1.Manifest, error) {
	if mt != types.OCIManifestSchema1 && (!docker || mt != types.DockerManifestSchema2) {
		return nil, errMalformed("media type %q is not an image manifest", mt)
	}
	if len(b) > MaxManifestSize {
		return nil, errMalformed("manifest of %d bytes (at most %d allowed)", len(b), MaxManifestSize)
	}
	if err := strictjson.Check(b); err != nil {
		return nil, errMalformed("manifest: %v", err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, errMalformed("manifest: %v", err)
	}
	if m.SchemaVersion != 2 {
		return nil, errMalformed("manifest schemaVersion %d, not 2", m.SchemaVersion)
	}
	if m.MediaType != "" && m.MediaType != mt {
		return nil, errMalformed("manifest says its media type is %q, the registry says %q", m.MediaType, mt)
	}
	return &m, nil
}

// SignSimple creates a simple-signing signature of digest d by priv and
// returns the signature manifest to push under the returned tag
// ("sha256-<hex>.sig"). When existing (the manifest now under that tag) is
// given, its signatures are kept and the new one is appended, unless
// existing already holds a signature of the same payload by the same key.
// dockerRef is written in the payload's critical.identity.docker-reference
// (cosign writes the repository name, e.g. "registry.example/team/app").
func SignSimple(d v1.Hash, dockerRef string, priv crypto.Signer, existing v1.Image) (v1.Image, string, error) {
	if err := checkDigest(d); err != nil {
		return nil, "", err
	}
	payload, err := simplePayload(dockerRef, d)
	if err != nil {
		return nil, "", err
	}
	sig, err := signBytes(priv, payload)
	if err != nil {
		return nil, "", err
	}
	layer := static.NewLayer(payload, SimpleSigningMediaType)
	h, err := layer.Digest()
	if err != nil {
		return nil, "", err
	}
	blobs := map[v1.Hash]partial.CompressedLayer{h: layer}
	var layers []v1.Descriptor
	dupe := false
	if existing != nil {
		m, err := existing.Manifest()
		if err != nil {
			return nil, "", fmt.Errorf("reading the existing signature manifest: %w", err)
		}
		for _, l := range m.Layers {
			layers = append(layers, l)
			if l.Digest == h {
				old, err := base64.StdEncoding.DecodeString(l.Annotations[SignatureAnnotation])
				dupe = dupe || (err == nil && verifyBytes(priv.Public(), payload, old))
				continue
			}
			if _, ok := blobs[l.Digest]; ok {
				continue
			}
			if blobs[l.Digest], err = existing.LayerByDigest(l.Digest); err != nil {
				return nil, "", fmt.Errorf("reading the existing signature manifest: %w", err)
			}
		}
	}
	if !dupe {
		layers = append(layers, v1.Descriptor{
			MediaType:   SimpleSigningMediaType,
			Size:        int64(len(payload)),
			Digest:      h,
			Annotations: map[string]string{SignatureAnnotation: base64.StdEncoding.EncodeToString(sig)},
		})
	}
	img, err := newSigImage(layers, blobs)
	if err != nil {
		return nil, "", err
	}
	return img, SigTag(d), nil
}
