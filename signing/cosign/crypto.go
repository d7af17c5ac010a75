package cosign

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/karman-project/karman/signing"
)

// ErrNotVerified is the error of a signature that no trusted key verifies:
// signed by another key, or its payload or signature was altered.
var ErrNotVerified = errors.New("the signature does not verify with any trusted key")

// signBytes signs msg with priv in the scheme that cosign verify checks by
// default: ECDSA (any curve) over SHA-256 with an ASN.1 DER signature,
// RSA PKCS #1 v1.5 over SHA-256, or pure Ed25519 over msg itself.
func signBytes(priv crypto.Signer, msg []byte) ([]byte, error) {
	if priv == nil {
		return nil, fmt.Errorf("no signing key: %w", signing.ErrInvalidKey)
	}
	if _, err := keyOf(priv.Public()); err != nil {
		return nil, err
	}
	switch priv.Public().(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey:
		h := sha256.Sum256(msg)
		return priv.Sign(rand.Reader, h[:], crypto.SHA256)
	default: // ed25519.PublicKey; keyOf refused the rest
		return priv.Sign(rand.Reader, msg, crypto.Hash(0))
	}
}

// verifyBytes reports whether sig is a signature of msg by pub in one of
// the schemes cosign produces for that key type:
//   - ECDSA, ASN.1 DER: over SHA-256 (what cosign verify checks by default,
//     and what cosign signs with P-256 keys), or over the curve's own hash
//     (SHA-384 for P-384, SHA-512 for P-521), which cosign 2.6 sign uses.
//   - RSA: PKCS #1 v1.5 over SHA-256.
//   - Ed25519: pure Ed25519, or Ed25519ph (SHA-512 prehash), which cosign
//     2.6 sign uses by default for Ed25519 keys.
//
// Accepting two hashes for one key is safe: a signature made over one hash
// verifies over the other only for a cross-hash collision. Ed25519 and
// Ed25519ph are domain-separated by RFC 8032.
func verifyBytes(pub crypto.PublicKey, msg, sig []byte) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		h := sha256.Sum256(msg)
		if ecdsa.VerifyASN1(k, h[:], sig) {
			return true
		}
		switch k.Curve {
		case elliptic.P384():
			h := sha512.Sum384(msg)
			return ecdsa.VerifyASN1(k, h[:], sig)
		case elliptic.P521():
			h := sha512.Sum512(msg)
			return ecdsa.VerifyASN1(k, h[:], sig)
		}
	case *rsa.PublicKey:
		h := sha256.Sum256(msg)
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, h[:], sig) == nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return false
		}
		if ed25519.Verify(k, msg, sig) {
			return true
		}
		h := sha512.Sum512(msg)
		return ed25519.VerifyWithOptions(k, h[:], sig, &ed25519.Options{Hash: crypto.SHA512}) == nil
	}
	return false
}

// verifyWithKeys returns the ID of the first key that verifies sig over
// msg, or an error wrapping ErrNotVerified.
func verifyWithKeys(keys []signing.Key, msg, sig []byte) (string, error) {
	for _, k := range keys {
		if verifyBytes(k.Public, msg, sig) {
			return k.ID, nil
		}
	}
	if len(keys) == 0 {
		return "", fmt.Errorf("%w (no key is trusted)", ErrNotVerified)
	}
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = shortID(k.ID)
	}
	return "", fmt.Errorf("%w (tried %s): signed by another key, or altered", ErrNotVerified, strings.Join(ids, ", "))
}

// keyOf checks that pub is a key type signing accepts and returns it as a
// signing.Key.
func keyOf(pub crypto.PublicKey) (signing.Key, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return signing.Key{}, fmt.Errorf("%v: %w", err, signing.ErrInvalidKey)
	}
	return signing.ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	if id == "" {
		return "(unnamed key)"
	}
	return id
}

// errMalformed wraps signing.ErrMalformed with a reason.
func errMalformed(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), signing.ErrMalformed)
}

// perSignature reports whether an error from a Source is a problem of one
// signature (recorded in its Signature.Err) rather than a registry failure
// (returned by Verify).
func perSignature(err error) bool {
	return errors.Is(err, signing.ErrNotFound) || errors.Is(err, signing.ErrMalformed)
}
