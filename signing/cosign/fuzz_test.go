package cosign

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/internal/strictjson"
	"github.com/karman-project/karman/signing"
)

var fuzzHash = v1.Hash{Algorithm: "sha256", Hex: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}

// FuzzSimplePayload checks parseSimplePayload against encoding/json: a
// payload it accepts is one strict JSON document in which the lenient
// decoder finds the same digest (no duplicate or case-folded member can
// make the two disagree), and refusals wrap signing.ErrMalformed. The
// second input is a docker reference: the payload simplePayload writes for
// it must parse back to its digest.
func FuzzSimplePayload(f *testing.F) {
	good, err := simplePayload("127.0.0.1:5000/app", fuzzHash)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, "127.0.0.1:5000/app")
	for _, s := range []string{
		`{"critical":{"identity":{"docker-reference":"r"},"image":{"docker-manifest-digest":"sha256:00"},"type":"cosign container image signature"},"optional":{"a":"b"}}`,
		`{"critical":{"identity":{"docker-reference":"r"},"image":{"docker-manifest-digest":"sha256:00","Docker-Manifest-Digest":"sha256:11"},"type":"cosign container image signature"}}`,
		`{"critical":{"identity":{"docker-reference":"r"},"image":{"docker-manifest-digest":"sha256:00"},"type":"cosign container image signature"},"Critical":{}}`,
		`{"critical":{"identity":{"docker-reference":"r"},"image":{"docker-manifest-digest":"sha256:00"},"type":"cosign container image signature"},"optional":[]}`,
		`{"critical":{"identity":{"docker-reference":1},"image":{"docker-manifest-digest":"x"},"type":"x"}}`,
		`{"critical":null}`, `[]`, `"x"`, `{"critical":{}} {}`,
	} {
		f.Add([]byte(s), "a\x00\xff\"b")
	}
	f.Fuzz(func(t *testing.T, b []byte, ref string) {
		d, err := parseSimplePayload(b)
		if err != nil {
			if !errors.Is(err, signing.ErrMalformed) {
				t.Fatalf("parseSimplePayload: %v does not wrap ErrMalformed", err)
			}
		} else {
			if err := strictjson.Check(b); err != nil {
				t.Fatalf("accepted a payload that strictjson refuses: %v", err)
			}
			var lenient struct {
				Critical struct {
					Image struct {
						Digest string `json:"docker-manifest-digest"`
					} `json:"image"`
					Type string `json:"type"`
				} `json:"critical"`
			}
			if err := json.Unmarshal(b, &lenient); err != nil {
				t.Fatalf("accepted a payload that encoding/json refuses: %v", err)
			}
			if lenient.Critical.Image.Digest != d || lenient.Critical.Type != SimpleSigningType {
				t.Fatalf("parseSimplePayload found digest %q, encoding/json %q (type %q)", d, lenient.Critical.Image.Digest, lenient.Critical.Type)
			}
		}
		p, err := simplePayload(ref, fuzzHash)
		if err != nil {
			t.Fatal(err)
		}
		if d, err := parseSimplePayload(p); err != nil || d != fuzzHash.String() {
			t.Fatalf("the payload written for %q parses to %q, %v", ref, d, err)
		}
	})
}

// FuzzBundle checks parseBundle against encoding/json as FuzzSimplePayload
// does parseSimplePayload (same payload type, payload and signature), then
// verifies what it accepts with a key and checks the in-toto statement, as
// verification does: refusals wrap signing.ErrMalformed (or are a
// signature that does not verify), and an accepted statement names the
// digest for encoding/json too. A bundle signed here, around the
// statement for the digest, must verify.
func FuzzBundle(f *testing.F) {
	k := newKey(f, "p256", 0)
	st, err := statement(fuzzHash)
	if err != nil {
		f.Fatal(err)
	}
	good := signedBundle(f, k, InTotoPayloadType, st)
	f.Add(good)
	f.Add(signedBundle(f, k, "text/plain", st))
	f.Add(makeBundle(f, InTotoPayloadType, []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"00"}}],"predicateType":"x"}`), []byte("sig")))
	for _, s := range []string{
		`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"certificate":{}},"dsseEnvelope":{}}`,
		`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{}},"messageSignature":{}}`,
		`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{},"tlogEntries":{}},"dsseEnvelope":{"payload":"","payloadType":"","signatures":[{"sig":"","keyid":"","KEYID":""}]}}`,
		`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{}},"dsseEnvelope":{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"AA=="},{"sig":"AA=="}]}}`,
		`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{}},"dsseEnvelope":{"payload":"e30","payloadType":"x","signatures":[{"sig":"AA=="}]}}`,
	} {
		f.Add([]byte(s))
	}
	v := &verifier{d: fuzzHash, keys: []signing.Key{k.key}}
	if id, err := v.bundle(good); err != nil || id != k.key.ID {
		f.Fatalf("a bundle signed here: %q, %v", id, err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := parseBundle(b)
		if err != nil {
			if !errors.Is(err, signing.ErrMalformed) {
				t.Fatalf("parseBundle: %v does not wrap ErrMalformed", err)
			}
			return
		}
		if err := strictjson.Check(b); err != nil {
			t.Fatalf("accepted a bundle that strictjson refuses: %v", err)
		}
		var lenient bundleJSON
		if err := json.Unmarshal(b, &lenient); err != nil {
			t.Fatalf("accepted a bundle that encoding/json refuses: %v", err)
		}
		le := lenient.DSSEEnvelope
		if len(le.Signatures) != 1 || le.PayloadType != e.payloadType || !bytes.Equal(le.Payload, e.payload) || !bytes.Equal(le.Signatures[0].Sig, e.sig) {
			t.Fatalf("parseBundle read %q %q %x, encoding/json %+v", e.payloadType, e.payload, e.sig, le)
		}
		if err := checkStatement(e.payload, fuzzHash); err != nil {
			if !errors.Is(err, signing.ErrMalformed) {
				t.Fatalf("checkStatement: %v does not wrap ErrMalformed", err)
			}
		} else {
			var lst struct {
				Subject []struct {
					Digest map[string]string `json:"digest"`
				} `json:"subject"`
			}
			if err := json.Unmarshal(e.payload, &lst); err != nil {
				t.Fatalf("accepted a statement that encoding/json refuses: %v", err)
			}
			found := false
			for _, s := range lst.Subject {
				found = found || s.Digest[fuzzHash.Algorithm] == fuzzHash.Hex
			}
			if !found {
				t.Fatalf("checkStatement accepted a statement whose subjects, for encoding/json, do not name %s: %q", fuzzHash, e.payload)
			}
		}
		if id, err := v.bundle(b); err == nil && id != k.key.ID {
			t.Fatalf("verified by %q, not the only key %q", id, k.key.ID)
		}
	})
}
