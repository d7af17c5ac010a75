// Package cosign reads and writes cosign key-based image signatures in both
// of cosign's formats, with the standard library's cryptography and
// go-containerregistry only (no sigstore code).
//
// # Formats
//
// Simple signing (cosign 2's default): the tag sha256-<hex>.sig in the
// image's repository holds an OCI image manifest with one layer per
// signature. A layer's media type is SimpleSigningMediaType, its blob is
// the payload
//
//	{"critical":{"identity":{"docker-reference":"REPO"},"image":{"docker-manifest-digest":"sha256:..."},"type":"cosign container image signature"},"optional":null}
//
// and its annotation SignatureAnnotation is the standard base64 signature
// of the payload's exact bytes. The config is an ordinary OCI image config
// listing the layers, as cosign writes it.
//
// Sigstore bundle v0.3 (cosign 3's default): an OCI referrer manifest of
// the image (subject = the image; artifactType and its one layer's media
// type BundleMediaType; config the empty descriptor "{}") whose layer is a
// bundle: verificationMaterial.publicKey.hint, no transparency log entry,
// and a DSSE envelope whose payload is the in-toto statement
//
//	{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"<hex>"}}],"predicateType":"https://sigstore.dev/cosign/sign/v1"}
//
// (cosign writes no subject name and no predicate). The signature covers
// DSSE's PAE: "DSSEv1 <len(type)> <type> <len(body)> <body>".
//
// # Keys and hashes
//
// SignSimple and SignBundle write what cosign verify checks by default:
// ECDSA on any curve over SHA-256 (ASN.1 DER), RSA PKCS #1 v1.5 over
// SHA-256, pure Ed25519. Verify accepts those and also what cosign 2.6
// sign writes with other keys: ECDSA P-384 over SHA-384, P-521 over
// SHA-512, and Ed25519ph (cosign 2.6.5 signs so but, without
// --signature-digest-algorithm, does not verify those itself). Key hints
// (bundle hint, DSSE keyid) are ignored: every trusted key is tried.
//
// # Verification order
//
//  1. The referrers of the image digest d (referrers API, or the sha256-<hex>
//     tag fallback): each referrer manifest is opened and its own
//     artifactType read (a registry's referrers list may misreport it).
//     Bundles annotated with another predicate type (attestations) and
//     other artifacts are skipped.
//  2. The tag sha256-<hex>.sig.
//
// Verify looks in both places at once and lists the referrers' signatures
// first. VerifyFirst, which a fetch uses, looks at the .sig tag first (one
// round trip: its payload is usually rebuilt locally, see simplePayload)
// and at the referrers (three round trips at least) only when the tag
// holds no signature that verifies. Prefetch starts that first request
// before the caller has confirmed the digest, when it expects one.
//  3. For each signature: the cryptography first, over the exact payload
//     bytes (DSSE: over the PAE), with each trusted key; then the payload is
//     parsed strictly; then it must name d (simple signing:
//     critical.image.docker-manifest-digest; bundle: payloadType, _type,
//     predicateType and a subject whose sha256 is d).
//
// A signature counts only when all three pass; Result.Verified is the first
// one that does. Every signature looked at is listed with the reason it
// failed (wrapping ErrNotVerified, signing.ErrMalformed or
// signing.ErrNotFound). An image without signatures gives an empty Result
// and no error; a registry failure is an error.
//
// # Strictness
//
// Every JSON document read is one value with no duplicate member names
// (compared case-insensitively, as encoding/json matches them), nested at
// most 32 deep. The simple-signing critical part must have exactly the
// members cosign writes; the top level only critical and optional (any
// object or null; its contents, such as cosign's -a annotations, are not
// checked). The bundle, being protobuf JSON, refuses unknown members; it
// is read with the camelCase member names every producer writes, not
// protobuf's snake_case alternatives. Its DSSE envelope must hold exactly
// one signature; certificate (keyless) bundles are refused; tlogEntries
// and timestampVerificationData are accepted and not checked. The in-toto
// statement ignores unknown members, as in-toto's parsing rules require,
// and may have a predicate (an object) or none.
//
// # Limits
//
// Manifests (MaxManifestSize) and payloads or bundles (MaxPayloadSize) are
// at most 256 KiB each; at most MaxReferrers (64) referrer manifests are
// opened and MaxSignatures (64) signatures looked at (see
// Result.Truncated). The work is signatures × keys signature checks.
// RegistrySource learns a manifest's size from a HEAD request before
// reading it by digest; a registry lying there is bounded only by
// go-containerregistry's own limit.
//
// Not checked: transparency log entries and signed timestamps (offline,
// key-based verification only); the simple-signing docker-reference (as
// cosign, which binds digests, not names: a signature copied to another
// repository verifies there too).
package cosign
