package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/google/go-containerregistry/pkg/name"
)

// Version is the policy.json format this package reads and writes.
const Version = 1

// MaxPolicySize bounds policy.json.
const MaxPolicySize = 1 << 20

// ErrInvalid is the class of every policy.json problem: syntax, unknown
// fields, bad versions, requirements or scopes.
var ErrInvalid = errors.New("invalid signature policy")

// Type is the kind of a requirement.
type Type string

// Requirement types.
const (
	// Signed accepts an image signed by one of the requirement's keys.
	Signed Type = "signed"
	// InsecureAcceptAnything accepts every image without looking at
	// signatures.
	InsecureAcceptAnything Type = "insecure-accept-anything"
	// Reject refuses every image.
	Reject Type = "reject"
)

// Requirement is what an image must satisfy to be accepted.
type Requirement struct {
	Type Type `json:"type"`
	// Keys are the IDs (hex SHA-256 of the PKIX DER) of the keys trusted
	// for a Signed requirement, stored in the key store.
	Keys []string `json:"keys,omitempty"`
}

func (r Requirement) String() string {
	if r.Type == Signed {
		return fmt.Sprintf("signed by one of %d %s", len(r.Keys), plural(len(r.Keys), "key", "keys"))
	}
	return string(r.Type)
}

// Scope is one entry of the policy: the requirement for every image whose
// scope lies under Name.
type Scope struct {
	// Name is the scope as written in policy.json: a registry
	// (HOST[:PORT]), a repository prefix (HOST[:PORT]/PATH), oci:/DIR or
	// docker-archive:/FILE.
	Name        string      `json:"scope"`
	Requirement Requirement `json:"requirement"`
	// norm is Name normalised for matching (docker.io is index.docker.io).
	norm string
}

// Policy is the parsed policy.json: a default requirement and scopes, in
// the order of the file.
type Policy struct {
	Default Requirement
	Scopes  []Scope
}

// New returns the policy used when there is none yet: reject everything.
func New() *Policy { return &Policy{Default: Requirement{Type: Reject}} }

// Decide returns the requirement for an image's scope (registry/repository,
// oci:DIR or docker-archive:FILE) and the name of the policy scope it comes
// from, "" for the default. The most specific scope wins; scopes match by
// whole path component: reg:5000/team covers reg:5000/team/app but not
// reg:5000/teamx.
func (p *Policy) Decide(scope string) (Requirement, string) {
	best := -1
	for i, s := range p.Scopes {
		if covers(s.norm, scope) && (best < 0 || len(s.norm) > len(p.Scopes[best].norm)) {
			best = i
		}
	}
	if best < 0 {
		return p.Default, ""
	}
	return p.Scopes[best].Requirement, p.Scopes[best].Name
}

// covers reports whether policy scope key covers image scope s.
func covers(key, s string) bool {
	if s == key || strings.HasPrefix(s, key+"/") {
		return true
	}
	// oci:/ and docker-archive:/ cover every layout or archive.
	return strings.HasSuffix(key, "/") && strings.HasPrefix(s, key)
}

// Find returns the index of the scope named name (compared normalised),
// or -1.
func (p *Policy) Find(name string) int {
	norm, err := NormalizeScope(name)
	if err != nil {
		return -1
	}
	for i, s := range p.Scopes {
		if s.norm == norm {
			return i
		}
	}
	return -1
}

// Set puts requirement r on scope name, replacing its requirement or
// adding the scope at the end.
func (p *Policy) Set(name string, r Requirement) error {
	norm, err := NormalizeScope(name)
	if err != nil {
		return err
	}
	if err := r.validate(); err != nil {
		return fmt.Errorf("scope %s: %w: %w", name, err, ErrInvalid)
	}
	if i := p.Find(name); i >= 0 {
		p.Scopes[i].Requirement = r
		return nil
	}
	p.Scopes = append(p.Scopes, Scope{Name: name, Requirement: r, norm: norm})
	return nil
}

// KeyIDs returns every key ID the policy names, once each, in order.
func (p *Policy) KeyIDs() []string {
	var ids []string
	seen := map[string]bool{}
	for _, r := range append([]Requirement{p.Default}, p.requirements()...) {
		for _, k := range r.Keys {
			if !seen[k] {
				seen[k] = true
				ids = append(ids, k)
			}
		}
	}
	return ids
}

func (p *Policy) requirements() []Requirement {
	rs := make([]Requirement, len(p.Scopes))
	for i, s := range p.Scopes {
		rs[i] = s.Requirement
	}
	return rs
}

// isKeyID tells a key fingerprint: 64 lower-case hex digits.
func isKeyID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (r Requirement) validate() error {
	switch r.Type {
	case Signed:
		if len(r.Keys) == 0 {
			return errors.New(`"signed" needs at least one key in "keys" (add one with karman trust add)`)
		}
		seen := map[string]bool{}
		for _, k := range r.Keys {
			if !isKeyID(k) {
				return fmt.Errorf("key %q is not a key ID (64 lowercase hex digits, as `karman trust list` shows)", k)
			}
			if seen[k] {
				return fmt.Errorf("key %s is listed twice", k)
			}
			seen[k] = true
		}
	case InsecureAcceptAnything, Reject:
		if len(r.Keys) > 0 {
			return fmt.Errorf("%q takes no keys (only \"signed\" does)", r.Type)
		}
	case "":
		return errors.New(`no "type" (want "signed", "insecure-accept-anything" or "reject")`)
	default:
		return fmt.Errorf("unknown requirement type %q (want \"signed\", \"insecure-accept-anything\" or \"reject\")", r.Type)
	}
	return nil
}

// NormalizeScope checks a policy scope and returns the form it is matched
// in. Registry scopes are HOST[:PORT] or HOST[:PORT]/REPO-PREFIX, without
// tag or digest (docker.io is normalised to index.docker.io, as image
// names are); oci:/ABS/DIR and docker-archive:/ABS/FILE name layouts and
// archives by clean absolute path, and oci:/ and docker-archive:/ cover
// them all.
func NormalizeScope(s string) (string, error) {
	for _, t := range []string{"oci:", "docker-archive:"} {
		if p, ok := strings.CutPrefix(s, t); ok {
			if !filepath.IsAbs(p) || filepath.Clean(p) != p {
				return "", fmt.Errorf("scope %q: %s needs a clean absolute path, as in %s/srv/images: %w", s, t, t, ErrInvalid)
			}
			return s, nil
		}
	}
	switch {
	case s == "":
		return "", fmt.Errorf("empty scope: %w", ErrInvalid)
	case strings.Contains(s, "://"):
		return "", fmt.Errorf("scope %q: write it without a scheme, as in 127.0.0.1:5000/team: %w", s, ErrInvalid)
	case strings.Contains(s, "@"):
		return "", fmt.Errorf("scope %q: scopes name registries and repositories, not digests: %w", s, ErrInvalid)
	case strings.HasSuffix(s, "/"):
		return "", fmt.Errorf("scope %q: drop the trailing slash: %w", s, ErrInvalid)
	}
	host, repo, hasRepo := strings.Cut(s, "/")
	if !strings.ContainsAny(host, ".:") && host != "localhost" {
		return "", fmt.Errorf("scope %q names no registry host; write it in full, as in %s, or use oci:/DIR or docker-archive:/FILE: %w", s, withHost(s), ErrInvalid)
	}
	reg, err := name.NewRegistry(host, name.StrictValidation)
	if err != nil {
		// The library's message holds the host as written, newlines
		// and all: quoted, the error stays one line.
		return "", fmt.Errorf("scope %q: %q is not a registry host (HOST or HOST:PORT, RFC 3986): %w", s, host, ErrInvalid)
	}
	if !hasRepo {
		return reg.Name(), nil
	}
	if strings.Contains(repo, ":") {
		return "", fmt.Errorf("scope %q: scopes name repositories, not tags; drop the :TAG (a scope covers every tag): %w", s, ErrInvalid)
	}
	// Check the path's syntax; keep it as written (a prefix, so Docker
	// Hub's implicit library/ is not added).
	if _, err := name.NewRepository(s); err != nil {
		return "", fmt.Errorf("scope %q: %q is not a repository path (lower-case letters, digits, and . _ - / between them): %w", s, repo, ErrInvalid)
	}
	return reg.Name() + "/" + repo, nil
}

// Marshal encodes the policy as policy.json, scopes in order.
func (p *Policy) Marshal() []byte {
	var b bytes.Buffer
	req := func(r Requirement) {
		t, _ := json.Marshal(string(r.Type))
		fmt.Fprintf(&b, `{"type": %s`, t)
		if len(r.Keys) > 0 {
			b.WriteString(`, "keys": [`)
			for i, k := range r.Keys {
				if i > 0 {
					b.WriteString(", ")
				}
				q, _ := json.Marshal(k)
				b.Write(q)
			}
			b.WriteString("]")
		}
		b.WriteString("}")
	}
	fmt.Fprintf(&b, "{\n  \"version\": %d,\n  \"default\": ", Version)
	req(p.Default)
	b.WriteString(",\n  \"scopes\": {")
	for i, s := range p.Scopes {
		if i > 0 {
			b.WriteString(",")
		}
		k, _ := json.Marshal(s.Name)
		fmt.Fprintf(&b, "\n    %s: ", k)
		req(s.Requirement)
	}
	if len(p.Scopes) > 0 {
		b.WriteString("\n  ")
	}
	b.WriteString("}\n}\n")
	return b.Bytes()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// withHost is the example of a name in full that an error suggests for s:
// s behind a registry host, or a placeholder when s holds characters
// (newlines, controls, quotes) that would garble a one-line message.
func withHost(s string) string {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) || r == '"' }) {
		return "127.0.0.1:5000/REPO"
	}
	return "127.0.0.1:5000/" + s
}
