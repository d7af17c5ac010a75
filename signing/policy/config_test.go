package policy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/karman-project/karman/signing"
)

func pubPEM(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func newKey(t *testing.T) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k, pubPEM(t, &k.PublicKey)
}

func TestTrustRoundTrip(t *testing.T) {
	ctx := context.Background()
	c := Config{Dir: filepath.Join(t.TempDir(), "etc")}
	_, pemA := newKey(t)
	_, pemB := newKey(t)

	ch, err := c.Trust(ctx, "127.0.0.1:5000/team", pemA)
	if err != nil {
		t.Fatal(err)
	}
	if !ch.Created || len(ch.Key.ID) != 64 {
		t.Errorf("first trust: %+v, want a created policy and a key ID", ch)
	}
	a := ch.Key.ID
	if _, err := os.Stat(filepath.Join(c.KeysDir(), a+".pub")); err != nil {
		t.Errorf("key not stored: %v", err)
	}
	// The rest of the file is kept.
	if _, err := c.SetRequirement(ctx, "oci:/srv/images", InsecureAcceptAnything); err != nil {
		t.Fatal(err)
	}
	ch, err = c.Trust(ctx, "127.0.0.1:5000/team", pemB)
	if err != nil {
		t.Fatal(err)
	}
	b := ch.Key.ID
	p, err := c.Load()
	if err != nil {
		t.Fatal(err)
	}
	if p.Default.Type != Reject || len(p.Scopes) != 2 || !slices.Equal(p.Scopes[0].Requirement.Keys, []string{a, b}) || p.Scopes[1].Requirement.Type != InsecureAcceptAnything {
		t.Fatalf("policy after trust:\n%s", p.Marshal())
	}
	keys, err := c.Keys(p)
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys: %v, %v", keys, err)
	}

	// Again: nothing changes.
	if ch, err := c.Trust(ctx, "127.0.0.1:5000/team", pemA); err != nil || !strings.Contains(strings.Join(ch.Notes, " "), "already trusts") {
		t.Errorf("trusting twice: %+v, %v", ch, err)
	}

	// rm by prefix: A leaves, B stays.
	if _, err := c.Untrust(ctx, a[:10], ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(c.KeysDir(), a+".pub")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("removed key still stored: %v", err)
	}
	p, _ = c.Load()
	if !slices.Equal(p.Scopes[0].Requirement.Keys, []string{b}) {
		t.Errorf("after rm: %s", p.Marshal())
	}
	// Removing the last key never weakens the scope: it becomes reject.
	ch, err = c.Untrust(ctx, b, "127.0.0.1:5000/team")
	if err != nil {
		t.Fatal(err)
	}
	p, _ = c.Load()
	if p.Scopes[0].Requirement.Type != Reject || !strings.Contains(strings.Join(ch.Notes, " "), "rejects every image") {
		t.Errorf("after removing the last key: %s (%v)", p.Marshal(), ch.Notes)
	}
	// rm --scope removes the entry.
	if _, err := c.Untrust(ctx, "", "127.0.0.1:5000/team"); err != nil {
		t.Fatal(err)
	}
	p, _ = c.Load()
	if len(p.Scopes) != 1 || p.Scopes[0].Name != "oci:/srv/images" {
		t.Errorf("after rm --scope: %s", p.Marshal())
	}
	if _, err := c.Untrust(ctx, "", "127.0.0.1:5000/nope"); !errors.Is(err, ErrInvalid) {
		t.Errorf("rm of an unknown scope: %v", err)
	}
	if _, err := c.Untrust(ctx, "ffff", ""); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("rm of an unknown key: %v", err)
	}
}

func TestTrustRefusesBadKeysAndPolicies(t *testing.T) {
	ctx := context.Background()
	c := Config{Dir: t.TempDir()}
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	priv, _ := newKey(t)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	for name, b := range map[string][]byte{
		"weak RSA":    pubPEM(t, &weak.PublicKey),
		"private key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		"not PEM":     []byte("hello"),
	} {
		if _, err := c.Trust(ctx, "reg.example/team", b); !errors.Is(err, signing.ErrInvalidKey) {
			t.Errorf("%s: got %v, want ErrInvalidKey", name, err)
		}
	}
	_, good := newKey(t)
	if _, err := c.Trust(ctx, "team", good); !errors.Is(err, ErrInvalid) {
		t.Errorf("scope without host: %v", err)
	}
	// A broken policy is never overwritten.
	broken := []byte("{\"version\": 1, \"scopes\": {\"reg.example/a\": {\"type\": \"reject\", \"note\": 1}}}")
	os.WriteFile(c.PolicyPath(), broken, 0o644)
	if _, err := c.Trust(ctx, "reg.example/team", good); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `unknown field "note"`) {
		t.Errorf("trust over a broken policy: %v", err)
	}
	if b, _ := os.ReadFile(c.PolicyPath()); string(b) != string(broken) {
		t.Errorf("broken policy was rewritten")
	}
	if _, err := NewVerifier(c.Dir); !errors.Is(err, ErrInvalid) {
		t.Errorf("verifier over a broken policy: %v", err)
	}
	// A policy naming a key the store lacks does not load.
	os.WriteFile(c.PolicyPath(), []byte(`{"version": 1, "default": {"type": "signed", "keys": ["`+idA+`"]}}`), 0o644)
	if _, err := NewVerifier(c.Dir); !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), "karman trust") {
		t.Errorf("verifier with a missing key: %v", err)
	}
}
