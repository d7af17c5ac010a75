package policy

import (
	"context"
	"errors"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/signing"
)

type fakeSource struct{ signing.Source }

func TestVerifierDecisions(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := Config{Dir: dir}
	d := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("cd", 32)}

	// No policy at all.
	v, err := NewVerifier(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Check(ctx, Image{Name: "reg:5000/team/app:1", Scope: "reg:5000/team/app", Digest: d, Signatures: fakeSource{}})
	if !errors.Is(err, signing.ErrRefused) || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), `karman trust add --scope reg:5000/team/app KEY.pub`) {
		t.Errorf("no policy: %v", err)
	}

	_, pemA := newKey(t)
	_, pemB := newKey(t)
	chA, err := c.Trust(ctx, "reg:5000/team", pemA)
	if err != nil {
		t.Fatal(err)
	}
	chB, err := c.Trust(ctx, "reg:5000/other", pemB)
	if err != nil {
		t.Fatal(err)
	}
	a, b := chA.Key.ID, chB.Key.ID
	c.SetRequirement(ctx, "reg:5000", InsecureAcceptAnything)
	c.SetRequirement(ctx, "reg:5000/team/legacy", Reject)
	c.SetRequirement(ctx, "docker-archive:/srv/ok.tar", InsecureAcceptAnything)
	c.Trust(ctx, "docker-archive:/srv/signed.tar", pemA)

	tests := []struct {
		name     string
		img      Image
		sigs     []Signature
		accepted bool
		want     []string
	}{
		{name: "insecure scope", img: Image{Name: "reg:5000/x:1", Scope: "reg:5000/x"}, accepted: true, want: []string{"scope reg:5000 accepts every image"}},
		{name: "default reject", img: Image{Name: "elsewhere.example/x:1", Scope: "elsewhere.example/x"},
			want: []string{"image elsewhere.example/x:1 (sha256:cdcd", "no scope of", "the default rejects every image", `"karman trust add --scope elsewhere.example/x KEY.pub"`, "--insecure-options=image"}},
		{name: "narrower reject", img: Image{Name: "reg:5000/team/legacy/app:1", Scope: "reg:5000/team/legacy/app"},
			want: []string{"scope reg:5000/team/legacy rejects every image", `karman trust rm --scope reg:5000/team/legacy`}},
		{name: "unsigned", img: Image{Name: "reg:5000/team/app:1", Scope: "reg:5000/team/app"},
			want: []string{"scope reg:5000/team requires a signature by one of 1 key (" + a[:12] + "); found no signature", `cosign sign --key cosign.key reg:5000/team/app@sha256:cdcd`, `"karman trust add --scope reg:5000/team KEY.pub"`}},
		{name: "untrusted", img: Image{Name: "reg:5000/team/app:1", Scope: "reg:5000/team/app"},
			sigs: []Signature{{Format: "sigstore-bundle", Error: "signed by an untrusted key"}, {Format: "simple-signing", Error: "payload names another digest"}},
			want: []string{"found 2 signatures, none by a trusted key (sigstore-bundle: signed by an untrusted key; simple-signing: payload names another digest)", `Trust the signer with "karman trust add --scope reg:5000/team KEY.pub"`}},
		{name: "verified by a key of another scope", img: Image{Name: "reg:5000/team/app:1", Scope: "reg:5000/team/app"},
			sigs: []Signature{{Format: "simple-signing", KeyID: b, Verified: true}},
			want: []string{"found 1 signature, none by a trusted key"}},
		{name: "signed", img: Image{Name: "reg:5000/team/app:1", Scope: "reg:5000/team/app"},
			sigs: []Signature{{Format: "simple-signing", Error: "bad"}, {Format: "sigstore-bundle", Location: "reg:5000/team/app@sha256:ee", KeyID: a, Verified: true}}, accepted: true,
			want: []string{"signed by trusted key " + a}},
		{name: "archive accepted", img: Image{Name: "docker-archive:/srv/ok.tar", Scope: "docker-archive:/srv/ok.tar", Archive: true}, accepted: true},
		{name: "archive needing a signature", img: Image{Name: "docker-archive:/srv/signed.tar", Scope: "docker-archive:/srv/signed.tar", Archive: true},
			want: []string{"a docker archive carries no signatures", `karman trust add --type insecure-accept-anything --scope docker-archive:/srv/signed.tar`}},
	}
	v, err = NewVerifier(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			called := false
			v.verify = func(_ context.Context, _ signing.Source, got v1.Hash, keys []signing.Key) ([]Signature, error) {
				called = true
				if got != d || len(keys) != 1 || keys[0].ID != a {
					t.Errorf("verify(%s, %d keys)", got, len(keys))
				}
				return tc.sigs, nil
			}
			img := tc.img
			img.Digest = d
			if !img.Archive {
				img.Signatures = fakeSource{}
			}
			dec, err := v.Check(ctx, img)
			if dec.Accepted != tc.accepted || (err == nil) != tc.accepted {
				t.Fatalf("accepted = %v, err = %v; want accepted %v", dec.Accepted, err, tc.accepted)
			}
			if err != nil && (!errors.Is(err, signing.ErrRefused) || strings.Contains(err.Error(), "\n")) {
				t.Errorf("refusal %q is not one line wrapping ErrRefused", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(dec.Reason, w) {
					t.Errorf("reason %q does not say %q", dec.Reason, w)
				}
			}
			if called && img.Archive {
				t.Errorf("signatures looked up for an archive")
			}
		})
	}
}
