package cosign

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/karman-project/karman/internal/strictjson"
	"github.com/karman-project/karman/signing"
)

// errSkip marks a referrer that is not an image signature (an SBOM, an
// attestation of another predicate type, another artifact).
var errSkip = errors.New("not an image signature")

// statement is the in-toto statement cosign signs for an image: one
// subject, named by digest only, and no predicate.
func statement(d v1.Hash) ([]byte, error) {
	type subject struct {
		Digest map[string]string `json:"digest"`
	}
	return json.Marshal(struct {
		Type          string    `json:"_type"`
		Subject       []subject `json:"subject"`
		PredicateType string    `json:"predicateType"`
	}{StatementType, []subject{{map[string]string{d.Algorithm: d.Hex}}}, SignPredicateType})
}

// pae is DSSE's pre-authentication encoding, what the signature covers.
func pae(payloadType string, body []byte) []byte {
	return fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(body), body)
}

// checkStatement parses an in-toto statement strictly where the in-toto
// parsing rules allow (members it does not know are ignored, as they
// require; duplicates are refused) and checks that it is a cosign
// signature with a subject whose digest is d.
func checkStatement(b []byte, d v1.Hash) error {
	bad := func(format string, args ...any) error {
		return errMalformed("in-toto statement: %s", fmt.Sprintf(format, args...))
	}
	if err := strictjson.Check(b); err != nil {
		return bad("%v", err)
	}
	top, err := object(b, "the statement", nil, "_type", "subject", "predicateType")
	if err != nil {
		return bad("%v", err)
	}
	if t, err := str(top["_type"], "_type"); err != nil || t != StatementType {
		return bad("_type is %s, not %q", top["_type"], StatementType)
	}
	if t, err := str(top["predicateType"], "predicateType"); err != nil || t != SignPredicateType {
		return bad("predicateType is %s, not %q (not a cosign image signature)", top["predicateType"], SignPredicateType)
	}
	if p, ok := top["predicate"]; ok && !isNull(p) && !isKind(p, '{') {
		return bad("predicate is neither null nor an object")
	}
	if !isKind(top["subject"], '[') {
		return bad("subject is not an array")
	}
	var subjects []json.RawMessage
	if err := json.Unmarshal(top["subject"], &subjects); err != nil {
		return bad("subject: %v", err)
	}
	var names []string
	for i, s := range subjects {
		m, err := object(s, fmt.Sprintf("subject %d", i), nil, "digest")
		if err != nil {
			return bad("%v", err)
		}
		digests, err := object(m["digest"], fmt.Sprintf("subject %d digest", i), nil)
		if err != nil {
			return bad("%v", err)
		}
		for alg, raw := range digests {
			hex, err := str(raw, fmt.Sprintf("subject %d digest %s", i, alg))
			if err != nil {
				return bad("%v", err)
			}
			if alg == d.Algorithm && hex == d.Hex {
				return nil
			}
			names = append(names, alg+":"+hex)
		}
	}
	return bad("the subjects %v do not include %s", names, d)
}

// envelope is what verification needs from a bundle.
type envelope struct {
	payloadType string
	payload     []byte
	sig         []byte
}

// parseBundle parses a sigstore bundle v0.3 holding a DSSE envelope signed
// by a key. A bundle is protobuf JSON, which refuses unknown members; so
// does this. Transparency log entries and timestamps are accepted but not
// checked (offline, key-based verification).
func parseBundle(b []byte) (*envelope, error) {
	bad := func(format string, args ...any) (*envelope, error) {
		return nil, errMalformed("sigstore bundle: %s", fmt.Sprintf(format, args...))
	}
	if err := strictjson.Check(b); err != nil {
		return bad("%v", err)
	}
	top, err := object(b, "the bundle", []string{"mediaType", "verificationMaterial", "dsseEnvelope", "messageSignature"}, "mediaType", "verificationMaterial")
	if err != nil {
		return bad("%v", err)
	}
	if mt, err := str(top["mediaType"], "mediaType"); err != nil || mt != BundleMediaType {
		return bad("mediaType is %s, not %q", top["mediaType"], BundleMediaType)
	}
	vm, err := object(top["verificationMaterial"], "verificationMaterial",
		[]string{"publicKey", "certificate", "x509CertificateChain", "tlogEntries", "timestampVerificationData"})
	if err != nil {
		return bad("%v", err)
	}
	_, cert := vm["certificate"]
	_, chain := vm["x509CertificateChain"]
	if cert || chain {
		return bad("signed with a certificate (keyless), only key-based signatures are supported")
	}
	if _, ok := vm["publicKey"]; !ok {
		return bad("verificationMaterial has no publicKey")
	}
	pk, err := object(vm["publicKey"], "verificationMaterial.publicKey", []string{"hint"})
	if err != nil {
		return bad("%v", err)
	}
	if h, ok := pk["hint"]; ok {
		if _, err := str(h, "publicKey.hint"); err != nil {
			return bad("%v", err)
		}
	}
	if t, ok := vm["tlogEntries"]; ok && !isKind(t, '[') {
		return bad("tlogEntries is not an array")
	}
	if t, ok := vm["timestampVerificationData"]; ok && !isKind(t, '{') {
		return bad("timestampVerificationData is not an object")
	}
	if _, ok := top["messageSignature"]; ok {
		return bad("it holds a message signature, not a DSSE envelope")
	}
	if _, ok := top["dsseEnvelope"]; !ok {
		return bad("no dsseEnvelope")
	}
	env, err := object(top["dsseEnvelope"], "dsseEnvelope", []string{"payload", "payloadType", "signatures"}, "payload", "payloadType", "signatures")
	if err != nil {
		return bad("%v", err)
	}
	var e envelope
	if e.payloadType, err = str(env["payloadType"], "dsseEnvelope.payloadType"); err != nil {
		return bad("%v", err)
	}
	if e.payload, err = b64(env["payload"], "dsseEnvelope.payload"); err != nil {
		return bad("%v", err)
	}
	var sigs []json.RawMessage
	if !isKind(env["signatures"], '[') || json.Unmarshal(env["signatures"], &sigs) != nil {
		return bad("dsseEnvelope.signatures is not an array")
	}
	if len(sigs) != 1 {
		return bad("the DSSE envelope has %d signatures, one is expected", len(sigs))
	}
	s, err := object(sigs[0], "the DSSE signature", []string{"sig", "keyid"}, "sig")
	if err != nil {
		return bad("%v", err)
	}
	if k, ok := s["keyid"]; ok {
		if _, err := str(k, "keyid"); err != nil {
			return bad("%v", err)
		}
	}
	if e.sig, err = b64(s["sig"], "sig"); err != nil {
		return bad("%v", err)
	}
	return &e, nil
}

// b64 decodes a JSON string holding standard base64 (protobuf JSON bytes).
func b64(raw json.RawMessage, what string) ([]byte, error) {
	s, err := str(raw, what)
	if err != nil {
		return nil, err
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", what, err)
	}
	return b, nil
}

// bundle verifies a bundle blob for v.d: the cryptography over the DSSE
// PAE first, with every key, then the payload type, then the statement.
func (v *verifier) bundle(b []byte) (string, error) {
	e, err := parseBundle(b)
	if err != nil {
		return "", err
	}
	keyID, err := verifyWithKeys(v.keys, pae(e.payloadType, e.payload), e.sig)
	if err != nil {
		return "", err
	}
	if e.payloadType != InTotoPayloadType {
		return "", errMalformed("signed by key %s, but the DSSE payloadType is %q, not %q", shortID(keyID), e.payloadType, InTotoPayloadType)
	}
	if err := checkStatement(e.payload, v.d); err != nil {
		return "", fmt.Errorf("signed by key %s, but %w", shortID(keyID), err)
	}
	return keyID, nil
}

// referrers looks at the bundles attached to v.d as OCI referrers.
func (v *verifier) referrers(ctx context.Context) error {
	descs, err := v.src.Referrers(ctx, v.d)
	if errors.Is(err, signing.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing the referrers of %s: %w", v.d, err)
	}
	seen := map[v1.Hash]bool{}
	for _, desc := range descs {
		if seen[desc.Digest] {
			continue // listed twice
		}
		seen[desc.Digest] = true
		if v.opened >= MaxReferrers || v.full() {
			v.res.Truncated = true
			return nil
		}
		v.opened++
		keyID, sigErr, err := v.referrer(ctx, desc.Digest)
		if err != nil {
			return err
		}
		if sigErr == errSkip {
			continue
		}
		v.add(FormatBundle, desc.Digest.String(), keyID, sigErr)
	}
	return nil
}

// referrer opens one referrer manifest and, if it is a cosign signature
// bundle, verifies it. sigErr is errSkip for other referrers, or why this
// signature does not count; err is a registry failure.
func (v *verifier) referrer(ctx context.Context, h v1.Hash) (keyID string, sigErr, err error) {
	b, mt, err := v.src.Manifest(ctx, h.String(), MaxManifestSize)
	if perSignature(err) {
		return "", fmt.Errorf("referrer manifest: %w", err), nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("reading referrer %s: %w", h, err)
	}
	if got := sha256.Sum256(b); h.Algorithm != "sha256" || hex.EncodeToString(got[:]) != h.Hex {
		return "", errMalformed("referrer manifest does not match its digest %s", h), nil
	}
	if mt != types.OCIManifestSchema1 {
		return "", errSkip, nil
	}
	m, err := parseManifest(b, mt, false)
	if err != nil {
		return "", fmt.Errorf("referrer manifest: %w", err), nil
	}
	at := m.ArtifactType
	if at == "" {
		at = string(m.Config.MediaType)
	}
	if at != BundleMediaType {
		return "", errSkip, nil
	}
	if p, ok := m.Annotations[BundlePredicateTypeAnnotation]; ok && p != SignPredicateType {
		return "", errSkip, nil // an attestation, not a signature
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != BundleMediaType {
		return "", errMalformed("a bundle manifest must have one layer of type %s", BundleMediaType), nil
	}
	l := m.Layers[0]
	if l.Size < 0 || l.Size > MaxPayloadSize {
		return "", errMalformed("bundle of %d bytes (at most %d allowed)", l.Size, MaxPayloadSize), nil
	}
	blob, err := v.src.Blob(ctx, l.Digest, MaxPayloadSize)
	if perSignature(err) {
		return "", fmt.Errorf("bundle: %w", err), nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("reading bundle %s: %w", l.Digest, err)
	}
	if int64(len(blob)) != l.Size {
		return "", errMalformed("bundle is %d bytes, its descriptor says %d", len(blob), l.Size), nil
	}
	keyID, sigErr = v.bundle(blob)
	return keyID, sigErr, nil
}

// SignBundle creates a sigstore bundle signature of the image imageDesc by
// priv and returns the referrer manifest to push by digest: artifactType
// and its one layer's media type are BundleMediaType, its config is the
// empty descriptor, its subject is imageDesc.
func SignBundle(imageDesc v1.Descriptor, priv crypto.Signer) (v1.Image, error) {
	d := imageDesc.Digest
	if err := checkDigest(d); err != nil {
		return nil, err
	}
	if imageDesc.MediaType == "" || imageDesc.Size <= 0 {
		return nil, fmt.Errorf("the image descriptor needs a media type and a size")
	}
	body, err := statement(d)
	if err != nil {
		return nil, err
	}
	sig, err := signBytes(priv, pae(InTotoPayloadType, body))
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return nil, err
	}
	hint := sha256.Sum256(der)
	var bj bundleJSON
	bj.MediaType = BundleMediaType
	bj.VerificationMaterial.PublicKey.Hint = base64.StdEncoding.EncodeToString(hint[:])
	bj.VerificationMaterial.TlogEntries = []json.RawMessage{}
	bj.DSSEEnvelope.Payload = body
	bj.DSSEEnvelope.PayloadType = InTotoPayloadType
	bj.DSSEEnvelope.Signatures = []dsseSignature{{Sig: sig}}
	bundle, err := json.Marshal(bj)
	if err != nil {
		return nil, err
	}
	layer := static.NewLayer(bundle, BundleMediaType)
	lh, err := layer.Digest()
	if err != nil {
		return nil, err
	}
	return newImage(v1.Manifest{
		ArtifactType: BundleMediaType,
		Layers:       []v1.Descriptor{{MediaType: BundleMediaType, Size: int64(len(bundle)), Digest: lh}},
		Subject:      &v1.Descriptor{MediaType: imageDesc.MediaType, Size: imageDesc.Size, Digest: d},
		Annotations: map[string]string{
			BundleContentAnnotation:            "dsse-envelope",
			BundlePredicateTypeAnnotation:      SignPredicateType,
			"org.opencontainers.image.created": time.Now().UTC().Format(time.RFC3339),
		},
	}, []byte("{}"), EmptyMediaType, map[v1.Hash]partial.CompressedLayer{lh: layer})
}

// bundleJSON is the bundle SignBundle writes: protobuf JSON member names,
// bytes in standard base64, no transparency log entry.
type bundleJSON struct {
	MediaType            string `json:"mediaType"`
	VerificationMaterial struct {
		PublicKey struct {
			Hint string `json:"hint"`
		} `json:"publicKey"`
		TlogEntries []json.RawMessage `json:"tlogEntries"`
	} `json:"verificationMaterial"`
	DSSEEnvelope struct {
		Payload     []byte          `json:"payload"`
		PayloadType string          `json:"payloadType"`
		Signatures  []dsseSignature `json:"signatures"`
	} `json:"dsseEnvelope"`
}

type dsseSignature struct {
	Sig   []byte `json:"sig"`
	KeyID string `json:"keyid"`
}
