package registries

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Endpoint is one place to pull an image from.
type Endpoint struct {
	// Ref is the image's reference there: the reference asked for, its
	// prefix replaced by the location.
	Ref string
	// Insecure allows plain HTTP and TLS without certificate checks.
	Insecure bool
	// Mirror is set for a [[registry.mirror]]; otherwise Ref is the
	// primary location (or the reference itself).
	Mirror bool
	// Path and Line name the entry it comes from ("" and 0: no entry
	// matched, the reference is used as it is).
	Path string
	Line int
}

// String describes the endpoint for messages: "mirror REF (FILE line N)".
func (e Endpoint) String() string {
	what := "location"
	if e.Mirror {
		what = "mirror"
	}
	if e.Path == "" {
		return e.Ref
	}
	return fmt.Sprintf("%s %s (%s line %d)", what, e.Ref, e.Path, e.Line)
}

// Match returns the entry that covers ref (a registry reference with a
// host, as image.ParseReference normalises it), and whether there is
// one. The longest matching prefix wins; between a host and a wildcard
// matching as long a part, the host; between two wildcards, the longer.
func (c *Config) Match(ref string) (*Registry, bool) {
	if c == nil {
		return nil, false
	}
	n := matchName(ref)
	var best *Registry
	bestLen := -1
	for i := range c.Registries {
		r := &c.Registries[i]
		l := r.match(n)
		if l < 0 {
			continue
		}
		if l > bestLen || l == bestLen && better(r, best) {
			best, bestLen = r, l
		}
	}
	return best, best != nil
}

func better(r, than *Registry) bool {
	if r.Wildcard != than.Wildcard {
		return !r.Wildcard
	}
	return len(r.Prefix) > len(than.Prefix)
}

// Resolve returns where to pull ref from, in the order to try: the
// entry's mirrors that serve such a reference (pull-from-mirror,
// mirror-by-digest-only), then its primary location if the entry writes
// one or if no mirror serves the reference. Without a matching entry it
// is ref itself. A blocked entry is an ErrBlocked error; a rewritten
// reference that does not parse, an ErrInvalid error.
func (c *Config) Resolve(ref string) ([]Endpoint, error) {
	r, ok := c.Match(ref)
	if !ok {
		return []Endpoint{{Ref: ref}}, nil
	}
	if r.Blocked {
		return nil, fmt.Errorf("image %s refused: %s line %d blocks prefix %q (blocked = true); pull it from another registry, or remove the entry: %w", ref, c.Path, r.Line, r.Prefix, ErrBlocked)
	}
	n := matchName(ref)
	rest := n[r.match(n):]
	digest := strings.Contains(n, "@")
	var eps []Endpoint
	for _, m := range r.Mirrors {
		from := m.PullFrom
		if r.MirrorByDigestOnly {
			from = DigestOnly
		}
		if from == DigestOnly && !digest || from == TagOnly && digest {
			continue
		}
		eps = append(eps, Endpoint{Ref: m.Location + rest, Insecure: m.Insecure, Mirror: true, Path: c.Path, Line: m.Line})
	}
	if len(eps) == 0 || r.LocationSet {
		loc := n
		if r.Location != "" {
			loc = r.Location + rest
		}
		eps = append(eps, Endpoint{Ref: loc, Insecure: r.Insecure, Path: c.Path, Line: r.Line})
	}
	for i, e := range eps {
		pr, err := name.ParseReference(e.Ref)
		if err != nil {
			return nil, fmt.Errorf("image %s: %s line %d rewrites it to %q, which is not an image reference; fix the entry's location: %w", ref, c.Path, e.Line, e.Ref, ErrInvalid)
		}
		eps[i].Ref = pr.Name()
	}
	return eps, nil
}

// match is the length of n that the entry's prefix matches, -1 if it
// does not. A prefix matches up to a separator: a host is followed by
// "/", a repository by "/", ":" (a tag) or "@" (a digest).
func (r *Registry) match(n string) int {
	if r.Wildcard {
		host := hostOf(n)
		if len(host) > len(r.Prefix)-1 && strings.HasSuffix(host, r.Prefix[1:]) {
			return len(host)
		}
		return -1
	}
	if !strings.HasPrefix(n, r.Prefix) {
		return -1
	}
	if len(n) == len(r.Prefix) {
		return len(n)
	}
	c := n[len(r.Prefix)]
	if c == '/' || strings.Contains(r.Prefix, "/") && (c == ':' || c == '@') {
		return len(r.Prefix)
	}
	return -1
}

// matchName is ref as prefixes are written: Docker Hub as docker.io.
func matchName(ref string) string {
	if rest, ok := strings.CutPrefix(ref, name.DefaultRegistry+"/"); ok {
		return "docker.io/" + rest
	}
	return ref
}

func hostOf(n string) string {
	h, _, _ := strings.Cut(n, "/")
	return h
}
