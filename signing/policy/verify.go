package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/signing"
)

// Image is what the verifier judges: an image as the user named it, its
// scope, the digest of what the name resolved to (an index or a
// manifest), and where its signatures are.
type Image struct {
	// Name is the reference as the user gave it, for messages.
	Name string
	// Scope is what the policy matches: REGISTRY/REPO, oci:/DIR or
	// docker-archive:/FILE.
	Scope  string
	Digest v1.Hash
	// Signatures reads the image's signatures; nil when its transport
	// carries none (docker archives).
	Signatures signing.Source
	// Archive is set for docker archives, which can only be accepted by
	// insecure-accept-anything.
	Archive bool
}

// Signature is one signature found for an image, and what became of it.
type Signature struct {
	Format   string `json:"format"`
	Location string `json:"location"`
	KeyID    string `json:"keyID,omitempty"`
	Verified bool   `json:"verified"`
	Error    string `json:"error,omitempty"`
}

// Decision is the verifier's judgement of an image, with what it is based
// on: `karman verify` prints it.
type Decision struct {
	Image  string `json:"image"`
	Digest string `json:"digest"`
	// Scope is the image's scope; PolicyScope the policy scope that
	// decided, "" for the default.
	Scope       string      `json:"scope"`
	PolicyScope string      `json:"policyScope,omitempty"`
	Requirement Requirement `json:"requirement"`
	// NoPolicy is set when policy.json does not exist.
	NoPolicy   bool        `json:"noPolicy,omitempty"`
	Signatures []Signature `json:"signatures"`
	Accepted   bool        `json:"accepted"`
	// Reason says why, in a sentence (for a refusal: the whole message,
	// with the commands that fix it).
	Reason string `json:"reason"`
}

// RefusedError is a refusal by the policy; it wraps signing.ErrRefused.
// Its message is one line: the image and digest, the requirement and
// what was found, and the commands that fix it.
type RefusedError struct{ Decision Decision }

func (e *RefusedError) Error() string { return e.Decision.Reason }
func (e *RefusedError) Unwrap() error { return signing.ErrRefused }

// verifyFunc checks the signatures of d in src against keys.
type verifyFunc func(ctx context.Context, src signing.Source, d v1.Hash, keys []signing.Key) ([]Signature, error)

// Verifier applies a configuration directory's policy to images.
//
// Build one with NewVerifier just before fetching (it reads policy.json
// and the keys it names once), then call Check for each image after its
// reference is resolved to a digest and before anything else of it is
// fetched. A policy.json that does not parse, or that names a key missing
// from the store, fails NewVerifier: nothing is accepted under a policy
// that cannot be read. A missing policy.json refuses every image.
type Verifier struct {
	cfg    Config
	policy *Policy // nil: no policy.json
	keys   map[string]signing.Key
	verify verifyFunc
}

// NewVerifier loads the policy and trusted keys of configDir.
func NewVerifier(configDir string) (*Verifier, error) {
	v := &Verifier{cfg: Config{Dir: configDir}, verify: cosignVerify}
	p, err := v.cfg.Load()
	if errors.Is(err, ErrNoPolicy) {
		return v, nil
	}
	if err != nil {
		return nil, err
	}
	if v.keys, err = v.cfg.Keys(p); err != nil {
		return nil, err
	}
	v.policy = p
	return v, nil
}

// ReportAll makes Check look at every signature of an image, to explain
// a decision in full (`karman verify`), rather than stop at the first that
// a trusted key verified, which is all a fetch needs.
func (v *Verifier) ReportAll() { v.verify = cosignVerifyAll }

// Check decides whether img may be brought onto the host. A refusal is a
// *RefusedError; other errors mean the signatures could not be read.
func (v *Verifier) Check(ctx context.Context, img Image) (Decision, error) {
	d := Decision{Image: img.Name, Digest: img.Digest.String(), Scope: img.Scope, Signatures: []Signature{}}
	if v.policy == nil {
		d.NoPolicy = true
		d.Requirement = Requirement{Type: Reject}
		return v.refuse(d, img, fmt.Sprintf("there is no signature policy (%s does not exist), and without one every image is rejected", v.cfg.PolicyPath()))
	}
	d.Requirement, d.PolicyScope = v.policy.Decide(img.Scope)
	where := "the default"
	if d.PolicyScope != "" {
		where = "scope " + d.PolicyScope
	}
	switch d.Requirement.Type {
	case InsecureAcceptAnything:
		d.Accepted = true
		d.Reason = fmt.Sprintf("%s accepts every image (insecure-accept-anything)", where)
		return d, nil
	case Reject:
		if d.PolicyScope == "" {
			return v.refuse(d, img, fmt.Sprintf("no scope of %s covers %s, and the default rejects every image", v.cfg.PolicyPath(), img.Scope))
		}
		return v.refuse(d, img, fmt.Sprintf("scope %s rejects every image", d.PolicyScope))
	case Signed:
	default:
		return d, fmt.Errorf("requirement %q: %w", d.Requirement.Type, ErrInvalid)
	}

	required := fmt.Sprintf("%s requires a signature by one of %d %s (%s)", where, len(d.Requirement.Keys), plural(len(d.Requirement.Keys), "key", "keys"), shortIDs(d.Requirement.Keys))
	if img.Archive || img.Signatures == nil {
		return v.refuse(d, img, required+", and a docker archive carries no signatures")
	}
	keys := make([]signing.Key, 0, len(d.Requirement.Keys))
	for _, id := range d.Requirement.Keys {
		k, ok := v.keys[id]
		if !ok {
			return d, fmt.Errorf("key %s is not loaded: %w", id, ErrUnknownKey)
		}
		keys = append(keys, k)
	}
	sigs, err := v.verify(ctx, img.Signatures, img.Digest, keys)
	if err != nil && !errors.Is(err, signing.ErrNotFound) {
		return d, fmt.Errorf("image %s (%s): reading its signatures: %w", img.Name, img.Digest, err)
	}
	d.Signatures = append(d.Signatures, sigs...)
	for _, s := range d.Signatures {
		// Accept only what a key of this requirement verified.
		if s.Verified && s.Error == "" && slices.Contains(d.Requirement.Keys, s.KeyID) {
			d.Accepted = true
			d.Reason = fmt.Sprintf("%s; signed by trusted key %s (%s at %s)", required, s.KeyID, s.Format, s.Location)
			return d, nil
		}
	}
	if len(d.Signatures) == 0 {
		return v.refuse(d, img, required+"; found no signature")
	}
	var why []string
	for _, s := range d.Signatures {
		e := s.Error
		if e == "" {
			e = "not verified"
		}
		why = append(why, s.Format+": "+e)
	}
	return v.refuse(d, img, fmt.Sprintf("%s; found %d %s, none by a trusted key (%s)", required, len(d.Signatures), plural(len(d.Signatures), "signature", "signatures"), strings.Join(why, "; ")))
}

// refuse completes d as a refusal: why, then the commands that fix it.
func (v *Verifier) refuse(d Decision, img Image, why string) (Decision, error) {
	d.Accepted = false
	var fix string
	switch {
	case img.Archive:
		fix = fmt.Sprintf(`Accept this archive with "karman trust add --type insecure-accept-anything --scope %s" (archives carry no signatures)`, img.Scope)
	case d.Requirement.Type == Signed && len(d.Signatures) == 0:
		scope := d.PolicyScope
		if scope == "" {
			scope = img.Scope
		}
		if strings.HasPrefix(img.Scope, "oci:") {
			fix = fmt.Sprintf(`Sign it and trust the signer with "karman trust add --scope %s KEY.pub"`, scope)
		} else {
			fix = fmt.Sprintf(`Sign it (for example with "cosign sign --key cosign.key %s@%s") and trust the signer with "karman trust add --scope %s KEY.pub"`, img.Scope, img.Digest, scope)
		}
	case d.Requirement.Type == Signed:
		scope := d.PolicyScope
		if scope == "" {
			scope = img.Scope
		}
		fix = fmt.Sprintf(`Trust the signer with "karman trust add --scope %s KEY.pub"`, scope)
	case d.PolicyScope != "" && d.PolicyScope != img.Scope:
		fix = fmt.Sprintf(`Trust a signer for this image's own scope with "karman trust add --scope %s KEY.pub", remove the rule with "karman trust rm --scope %s"`, img.Scope, d.PolicyScope)
	case d.PolicyScope != "":
		fix = fmt.Sprintf(`Trust a signer instead with "karman trust add --scope %s KEY.pub"`, img.Scope)
	default:
		fix = fmt.Sprintf(`Trust the signer with "karman trust add --scope %s KEY.pub"`, img.Scope)
	}
	d.Reason = fmt.Sprintf("image %s (%s) refused: %s. %s, or skip verification once with --insecure-options=image", img.Name, img.Digest, why, fix)
	return d, &RefusedError{Decision: d}
}

func shortIDs(ids []string) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = ShortID(id)
	}
	return strings.Join(s, ", ")
}

// ShortID is the abbreviation of a key ID used in messages; commands
// accept any unique prefix.
func ShortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
