package signing

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Error classes.
var (
	// ErrRefused: the policy refuses the image (unsigned, no trusted
	// signature, reject requirement, no policy).
	ErrRefused = errors.New("refused by the signature policy")
	// ErrInvalidKey: a key file is not a usable public key.
	ErrInvalidKey = errors.New("invalid public key")
	// ErrNotFound: a signature manifest or blob is absent.
	ErrNotFound = errors.New("not found")
	// ErrMalformed: a signature, bundle or payload does not parse, is too
	// large, or is for another digest.
	ErrMalformed = errors.New("malformed signature")
)

// Key is a public key trusted to sign images.
type Key struct {
	// ID is the key's fingerprint: hex SHA-256 of its PKIX DER encoding.
	ID     string
	Public crypto.PublicKey
	// PEM is the key as it was read.
	PEM []byte
}

// ParsePublicKey reads a PEM "PUBLIC KEY" (PKIX): ECDSA P-256, P-384 or
// P-521, RSA (2048 bits or more) or Ed25519.
func ParsePublicKey(b []byte) (Key, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return Key{}, fmt.Errorf("no PEM \"PUBLIC KEY\" block (a cosign.pub file is expected): %w", ErrInvalidKey)
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return Key{}, fmt.Errorf("%v: %w", err, ErrInvalidKey)
	}
	if err := checkKeyType(pub); err != nil {
		return Key{}, err
	}
	sum := sha256.Sum256(blk.Bytes)
	return Key{ID: hex.EncodeToString(sum[:]), Public: pub, PEM: b}, nil
}

// Source is where the signatures of an image are read from: the image's
// repository in a registry, or its OCI layout.
type Source interface {
	// Manifest returns a manifest by tag or by digest ("sha256:...") with
	// its media type, refusing more than limit bytes; ErrNotFound when
	// there is none.
	Manifest(ctx context.Context, ref string, limit int64) ([]byte, types.MediaType, error)
	// Referrers lists the manifests whose subject is d, through the
	// referrers API or its sha256-<hex> tag fallback.
	Referrers(ctx context.Context, d v1.Hash) ([]v1.Descriptor, error)
	// Blob returns the blob d, checked against its digest, refusing more
	// than limit bytes.
	Blob(ctx context.Context, d v1.Hash, limit int64) ([]byte, error)
}

// NamedSource is a Source that knows the name of the repository it reads
// ("registry.example/team/app"), which a simple-signing payload names.
// Verification then rebuilds such a payload locally instead of reading it
// when the signature's descriptor has that payload's digest.
type NamedSource interface {
	Source
	RepositoryName() string
}

func checkKeyType(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("ECDSA curve %s is not supported (use P-256, P-384 or P-521): %w", k.Curve.Params().Name, ErrInvalidKey)
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits is too weak (2048 at least): %w", k.N.BitLen(), ErrInvalidKey)
		}
		return nil
	case ed25519.PublicKey:
		return nil
	}
	return fmt.Errorf("key type %T is not supported (ECDSA, RSA or Ed25519): %w", pub, ErrInvalidKey)
}
