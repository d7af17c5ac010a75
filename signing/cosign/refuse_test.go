package cosign

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/signing"
)

// otherDigest is a digest of no image here.
var otherDigest = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0123456789abcdef", 4)}

func TestRefusedSimple(t *testing.T) {
	k := newKey(t, "p256", 0)
	payload := func(e *env) []byte {
		b, err := simplePayload(e.repo.Name(), e.d)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name string
		// make returns the payload and the base64 signature to push.
		make func(e *env) ([]byte, string)
		want error
		msg  string
	}{
		{"tampered payload", func(e *env) ([]byte, string) {
			p := payload(e)
			sig := sign64(t, k, p)
			return []byte(strings.Replace(string(p), `"optional":null`, `"optional":{}`, 1)), sig
		}, ErrNotVerified, "does not verify"},
		{"tampered signature", func(e *env) ([]byte, string) {
			p := payload(e)
			sig, _ := base64.StdEncoding.DecodeString(sign64(t, k, p))
			sig[len(sig)-1] ^= 1
			return p, base64.StdEncoding.EncodeToString(sig)
		}, ErrNotVerified, "does not verify"},
		{"signature not base64", func(e *env) ([]byte, string) {
			return payload(e), "@@@"
		}, signing.ErrMalformed, "signature annotation"},
		{"payload for another digest", func(e *env) ([]byte, string) {
			p, _ := simplePayload(e.repo.Name(), otherDigest)
			return p, sign64(t, k, p)
		}, signing.ErrMalformed, "the payload is for " + otherDigest.String()},
		{"wrong type", func(e *env) ([]byte, string) {
			p := []byte(strings.Replace(string(payload(e)), SimpleSigningType, "atomic container signature", 1))
			return p, sign64(t, k, p)
		}, signing.ErrMalformed, "critical.type"},
		{"unknown critical member", func(e *env) ([]byte, string) {
			p := []byte(strings.Replace(string(payload(e)), `"type":`, `"extra":1,"type":`, 1))
			return p, sign64(t, k, p)
		}, signing.ErrMalformed, `unknown member "extra"`},
		{"duplicate member", func(e *env) ([]byte, string) {
			p := []byte(strings.Replace(string(payload(e)), `"image":{`, `"image":{"docker-manifest-digest":"sha256:00",`, 1))
			return p, sign64(t, k, p)
		}, signing.ErrMalformed, "duplicate member"},
		{"case-variant duplicate", func(e *env) ([]byte, string) {
			p := []byte(strings.Replace(string(payload(e)), `"critical":`, `"Critical":{},"critical":`, 1))
			return p, sign64(t, k, p)
		}, signing.ErrMalformed, "duplicate member"},
		{"digest not a string", func(e *env) ([]byte, string) {
			p := []byte(strings.Replace(string(payload(e)), `"docker-manifest-digest":"`+e.d.String()+`"`, `"docker-manifest-digest":null`, 1))
			return p, sign64(t, k, p)
		}, signing.ErrMalformed, "not a JSON string"},
		{"trailing data", func(e *env) ([]byte, string) {
			p := append(payload(e), []byte(` {}`)...)
			return p, sign64(t, k, p)
		}, signing.ErrMalformed, "after the JSON value"},
		{"not JSON", func(e *env) ([]byte, string) {
			p := []byte("hello")
			return p, sign64(t, k, p)
		}, signing.ErrMalformed, "payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, false)
			p, sig := tt.make(e)
			e.pushRawSimple(t, [][]byte{p}, []string{sig})
			checkRefused(t, e.verify(t, k.key), FormatSimpleSigning, tt.want, tt.msg)
		})
	}
}

func TestRefusedBundle(t *testing.T) {
	k := newKey(t, "p256", 0)
	stmt := func(e *env) []byte {
		b, err := statement(e.d)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	replace := func(b []byte, old, new string) []byte {
		return []byte(strings.Replace(string(b), old, new, 1))
	}
	tests := []struct {
		name string
		make func(e *env) []byte // the bundle
		want error
		msg  string
	}{
		{"tampered payload", func(e *env) []byte {
			sig, _ := signBytes(k.priv, pae(InTotoPayloadType, stmt(e)))
			return makeBundle(t, InTotoPayloadType, replace(stmt(e), `"subject"`, ` "subject"`), sig)
		}, ErrNotVerified, "does not verify"},
		{"tampered signature", func(e *env) []byte {
			sig, _ := signBytes(k.priv, pae(InTotoPayloadType, stmt(e)))
			sig[5] ^= 1
			return makeBundle(t, InTotoPayloadType, stmt(e), sig)
		}, ErrNotVerified, "does not verify"},
		{"payload type changed after signing", func(e *env) []byte {
			sig, _ := signBytes(k.priv, pae(InTotoPayloadType, stmt(e)))
			return makeBundle(t, "application/json", stmt(e), sig)
		}, ErrNotVerified, "does not verify"},
		{"signed with another payload type", func(e *env) []byte {
			return signedBundle(t, k, "application/json", stmt(e))
		}, signing.ErrMalformed, "payloadType"},
		{"wrong predicateType", func(e *env) []byte {
			return signedBundle(t, k, InTotoPayloadType, replace(stmt(e), SignPredicateType, "https://slsa.dev/provenance/v1"))
		}, signing.ErrMalformed, "predicateType"},
		{"wrong statement type", func(e *env) []byte {
			return signedBundle(t, k, InTotoPayloadType, replace(stmt(e), StatementType, "https://in-toto.io/Statement/v0.1"))
		}, signing.ErrMalformed, "_type"},
		{"subject mismatch", func(e *env) []byte {
			b, _ := statement(otherDigest)
			return signedBundle(t, k, InTotoPayloadType, b)
		}, signing.ErrMalformed, "do not include " + "sha256:"},
		{"subject digest of another algorithm", func(e *env) []byte {
			return signedBundle(t, k, InTotoPayloadType, replace(stmt(e), `"sha256":`, `"sha512":`))
		}, signing.ErrMalformed, "do not include"},
		{"no subject", func(e *env) []byte {
			return signedBundle(t, k, InTotoPayloadType, replace(stmt(e), `"subject":[`, `"subjects":[`))
		}, signing.ErrMalformed, `no "subject"`},
		{"duplicate statement member", func(e *env) []byte {
			return signedBundle(t, k, InTotoPayloadType, replace(stmt(e), `"_type":`, `"predicateType":"x","_type":`))
		}, signing.ErrMalformed, "duplicate member"},
		{"unknown bundle member", func(e *env) []byte {
			return replace(signedBundle(t, k, InTotoPayloadType, stmt(e)), `"mediaType"`, `"extra":true,"mediaType"`)
		}, signing.ErrMalformed, `unknown member "extra"`},
		{"bundle version", func(e *env) []byte {
			return replace(signedBundle(t, k, InTotoPayloadType, stmt(e)), "v0.3", "v0.2")
		}, signing.ErrMalformed, "mediaType"},
		{"two DSSE signatures", func(e *env) []byte {
			b := signedBundle(t, k, InTotoPayloadType, stmt(e))
			i := strings.Index(string(b), `"signatures":[`) + len(`"signatures":[`)
			j := strings.Index(string(b[i:]), "}") + i + 1
			return replace(b, string(b[i:j]), string(b[i:j])+","+string(b[i:j]))
		}, signing.ErrMalformed, "2 signatures"},
		{"keyless", func(e *env) []byte {
			return replace(signedBundle(t, k, InTotoPayloadType, stmt(e)), `"publicKey":{"hint":"aGludA=="}`, `"certificate":{"rawBytes":"AA=="}`)
		}, signing.ErrMalformed, "keyless"},
		{"message signature", func(e *env) []byte {
			return []byte(`{"mediaType":"` + BundleMediaType + `","verificationMaterial":{"publicKey":{}},"messageSignature":{}}`)
		}, signing.ErrMalformed, "message signature"},
		{"not JSON", func(e *env) []byte { return []byte("{") }, signing.ErrMalformed, "sigstore bundle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, true)
			e.pushRawBundle(t, tt.make(e), SignPredicateType)
			checkRefused(t, e.verify(t, k.key), FormatBundle, tt.want, tt.msg)
		})
	}
}

// checkRefused checks that res holds one signature, unverified, for the
// reason want, with msg in its message.
func checkRefused(t *testing.T, res Result, format string, want error, msg string) {
	t.Helper()
	if res.Verified != nil {
		t.Fatalf("verified: %+v", *res.Verified)
	}
	if len(res.Signatures) != 1 {
		t.Fatalf("%d signatures, want 1: %+v", len(res.Signatures), res.Signatures)
	}
	s := res.Signatures[0]
	if s.Format != format || s.KeyID != "" {
		t.Errorf("signature %+v", s)
	}
	if !errors.Is(s.Err, want) || !strings.Contains(s.Err.Error(), msg) {
		t.Errorf("Err = %v\nwant %v, containing %q", s.Err, want, msg)
	}
}
