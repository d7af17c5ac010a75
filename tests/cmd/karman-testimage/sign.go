package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/signing/cosign"
)

// genKey writes an ECDSA P-256 key pair to dir: cosign.key (PKCS #8
// "PRIVATE KEY" PEM, unencrypted: a test key) and cosign.pub (PKIX
// "PUBLIC KEY" PEM, as cosign writes it).
func genKey(dir string) error {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cosign.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "cosign.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644)
}

// loadKey reads an unencrypted PKCS #8 private key (as genKey writes).
func loadKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PEM \"PRIVATE KEY\" block (cosign's encrypted keys are not read; make one with --gen-key)", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: %T cannot sign", path, k)
	}
	return s, nil
}

// sign signs the image pushed to ref (described by desc) in format:
// simple (the .sig tag), bundle (a sigstore bundle referrer) or both.
func sign(ctx context.Context, ref string, desc v1.Descriptor, keyFile, format string) error {
	priv, err := loadKey(keyFile)
	if err != nil {
		return err
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	var errs []error
	if format == "simple" || format == "both" {
		errs = append(errs, cosign.PushSimple(ctx, r.Context(), desc.Digest, priv))
	}
	if format == "bundle" || format == "both" {
		errs = append(errs, cosign.PushBundle(ctx, r.Context(), desc, priv))
	}
	return errors.Join(errs...)
}
