package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParse checks that Parse accepts only valid JSON, refuses with a
// one-line error wrapping ErrInvalid, and that what it accepts is written
// by Marshal as a document that Parse reads back as the same policy (and
// that Marshal then reproduces byte for byte). Every scope must decide its
// own normalised name, and a normalised scope must be a fixed point of
// NormalizeScope.
func FuzzParse(f *testing.F) {
	key := strings.Repeat("ab", 32)
	for _, s := range []string{
		`{"version": 1}`,
		`{"version": 1, "default": {"type": "reject"}, "scopes": {}}`,
		`{"version": 1, "default": {"type": "signed", "keys": ["` + key + `"]}, "scopes": {"127.0.0.1:5000/team": {"type": "insecure-accept-anything"}, "oci:/srv/images": {"type": "reject"}, "docker-archive:/": {"type": "signed", "keys": ["` + key + `"]}}}`,
		`{"version": 1, "scopes": {"docker.io/library": {"type": "reject"}, "index.docker.io/library": {"type": "reject"}}}`,
		`{"version": 1, "version": 1}`,
		`{"version": 1.0}`,
		`{"version": 1, "default": {"type": "signed", "keys": []}}`,
		`{"version": 1, "default": {"type": "reject", "keys": ["` + key + `"]}}`,
		`{"version": 1, "scopes": {"busybox": {"type": "reject"}}}`,
		`{"version": 1, "scopes": {"reg.example/a:tag": {"type": "reject"}, "oci:rel": {"type": "reject"}}}`,
		`{"version": 1} {}`,
		`{"version": 1, "Default": {"type": "reject"}}`,
		`{"version": 1, "default": {"type": "reject"}, "scopes": {"localhost:5000": {"type": "reject"}}}` + "\n\n",
		"{\"version\": 1, \"scopes\": {\"a.b/c\\u0000\": {\"type\": \"reject\"}}}",
		`{"version": 1, "default": {"type": "signed", "keys": ["` + key + `", "` + key + `"]}}`,
		`[1, 2]`, ``, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse("policy.json", b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse: %v does not wrap ErrInvalid", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("Parse: the error is not one line: %q", err)
			}
			return
		}
		if !json.Valid(b) {
			t.Fatalf("Parse accepted invalid JSON")
		}
		out := p.Marshal()
		p2, err := Parse("policy.json", out)
		if err != nil {
			t.Fatalf("Parse of Marshal's output: %v\n%s", err, out)
		}
		if diff := cmp.Diff(p, p2, cmp.AllowUnexported(Scope{})); diff != "" {
			t.Fatalf("policy differs after Marshal and Parse (-first +again):\n%s", diff)
		}
		if out2 := p2.Marshal(); !bytes.Equal(out, out2) {
			t.Fatalf("Marshal is not stable:\n%s\n%s", out, out2)
		}
		for _, s := range p.Scopes {
			if n, err := NormalizeScope(s.norm); err != nil || n != s.norm {
				t.Fatalf("scope %q normalises to %q, which normalises to %q, %v", s.Name, s.norm, n, err)
			}
			if i := p.Find(s.Name); i < 0 || p.Scopes[i].Name != s.Name {
				t.Fatalf("Find(%q) = %d", s.Name, i)
			}
			if r, name := p.Decide(s.norm); name != s.Name || !cmp.Equal(r, s.Requirement) {
				t.Fatalf("Decide(%q) = %v from scope %q, want %v from its own scope %q", s.norm, r, name, s.Requirement, s.Name)
			}
		}
	})
}
