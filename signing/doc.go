// Package signing decides whether an image may be brought onto the host.
//
// It owns the trust policy (policy.json: scopes and requirements), the
// trusted keys, and key-based verification of cosign signatures in both of
// cosign's formats: the `sha256-<hex>.sig` tag holding simple-signing
// payloads, and the sigstore bundle (v0.3, DSSE over an in-toto statement)
// attached to the image as an OCI referrer. The image layer calls it after
// it has resolved a reference to a manifest digest and before it fetches
// any config or layer.
//
// Subpackages: cosign (reading and writing the two signature formats),
// policy (policy.json and the key store).
package signing
