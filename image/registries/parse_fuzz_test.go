package registries

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/pelletier/go-toml/v2"

	"github.com/karman-project/karman/image"
)

// FuzzRegistriesConf: registries.conf is hostile input. Refusals are one
// line naming the file, wrapping ErrInvalid; an accepted configuration
// has only valid prefixes and locations, no prefix twice, reads the same
// written out again, and resolves references under its prefixes to
// endpoints that are normalised image references, or refuses them as the
// entry says.
func FuzzRegistriesConf(f *testing.F) {
	for _, s := range []string{
		"",
		"unqualified-search-registries = [\"docker.io\"]\nshort-name-mode = \"permissive\"\n",
		"[[registry]]\nprefix = \"registry.k8s.io\"\nlocation = \"127.0.0.1:5000\"\ninsecure = true\n",
		"[[registry]]\nlocation = \"docker.io/library\"\n[[registry.mirror]]\nlocation = \"m.example/hub\"\npull-from-mirror = \"digest-only\"\n[[registry.mirror]]\nlocation = \"[::1]:5001\"\ninsecure = true\n",
		"[[registry]]\nprefix = \"*.corp.example\"\nblocked = true\n[[registry.mirror]]\nlocation = \"c.example\"\n",
		"[[registry]]\nprefix = \"a.example/team/app:1.0\"\nmirror-by-digest-only = true\nmirror = [{location = \"m.example/app\"}]\n",
		"registry = [{prefix = \"a.example\", location = \"b.example/x\"}]\n[aliases]\n\"x\" = \"a.example/x\"\n",
		"[[registry]]\nprefix = \"a.example/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\nlocation = \"b.example/app\"\n",
		"[registries.search]\nregistries = ['a.example']\n",
		"[[registry]]\nprefix = \"a.example\"\nproxy = \"http://p\"\n\"quoted.key\" = 1\n",
	} {
		f.Add(s, "a.example/team/app:1.0")
	}
	f.Fuzz(func(t *testing.T, doc, ref string) {
		c, err := Parse("r.conf", []byte(doc))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("refusal %q does not wrap ErrInvalid", err)
			}
			if msg := err.Error(); strings.ContainsAny(msg, "\n\r") || !strings.HasPrefix(msg, "r.conf") {
				t.Fatalf("refusal %q is not one line starting with the file", msg)
			}
			return
		}
		seen := map[string]bool{}
		for _, r := range c.Registries {
			if canon, wild, msg := checkName(r.Prefix, true); msg != "" || canon != r.Prefix || wild != r.Wildcard {
				t.Fatalf("accepted prefix %q: %q (canonical %q)", r.Prefix, msg, canon)
			}
			if seen[r.Prefix] {
				t.Fatalf("prefix %q twice", r.Prefix)
			}
			seen[r.Prefix] = true
			if r.Wildcard != (r.Location == "") {
				t.Fatalf("entry %q: location %q", r.Prefix, r.Location)
			}
			locs := []string{r.Location}
			for _, m := range r.Mirrors {
				locs = append(locs, m.Location)
				if r.MirrorByDigestOnly && m.PullFrom != "" {
					t.Fatalf("entry %q: pull-from-mirror with mirror-by-digest-only", r.Prefix)
				}
			}
			for _, l := range locs {
				if _, _, msg := checkName(l, false); l != "" && msg != "" {
					t.Fatalf("accepted location %q: %s", l, msg)
				}
			}
		}

		// Written out again, it reads the same.
		again, err := Parse("r.conf", encode(t, c))
		if err != nil {
			t.Fatalf("written out again: %v\n%s", err, encode(t, c))
		}
		if d := cmp.Diff(c, again, cmpopts.IgnoreFields(Registry{}, "Line"), cmpopts.IgnoreFields(Mirror{}, "Line"), cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("written out and read again (-first +again):\n%s", d)
		}

		// References under each prefix, and ref.
		refs := []string{ref}
		for _, r := range c.Registries {
			p := strings.TrimPrefix(r.Prefix, "*.")
			if r.Wildcard {
				p = "x." + p
			}
			refs = append(refs, p+"/app:1", p+"/app/sub@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", p)
		}
		for _, s := range refs {
			ir, err := image.ParseReference(s)
			if err != nil || ir.Transport != image.Registry {
				continue
			}
			eps, err := c.Resolve(ir.Name)
			m, matched := c.Match(ir.Name)
			switch {
			case errors.Is(err, ErrBlocked):
				if !matched || !m.Blocked {
					t.Fatalf("%s refused as blocked, but its entry is %+v", ir.Name, m)
				}
				continue
			case matched && m.Blocked:
				t.Fatalf("%s under blocked entry %q: %v, %v", ir.Name, m.Prefix, eps, err)
			case errors.Is(err, ErrInvalid):
				continue // a location whose rewrite is no reference
			case err != nil:
				t.Fatalf("%s: %v", ir.Name, err)
			case len(eps) == 0:
				t.Fatalf("%s: no endpoint", ir.Name)
			}
			for _, e := range eps {
				er, err := image.ParseReference(e.Ref)
				if err != nil || er.Name != e.Ref {
					t.Fatalf("%s: endpoint %q is not a normalised reference (%v, %q)", ir.Name, e.Ref, err, er.Name)
				}
			}
			if !matched && (len(eps) != 1 || eps[0].Ref != ir.Name) {
				t.Fatalf("%s: no entry, but endpoints %v", ir.Name, eps)
			}
		}
	})
}

// encode writes c as registries.conf.
func encode(t *testing.T, c *Config) []byte {
	type mirror struct {
		Location string `toml:"location"`
		Insecure bool   `toml:"insecure"`
		PullFrom string `toml:"pull-from-mirror,omitempty"`
	}
	type registry struct {
		Prefix             string   `toml:"prefix"`
		Location           string   `toml:"location,omitempty"`
		Insecure           bool     `toml:"insecure"`
		Blocked            bool     `toml:"blocked"`
		MirrorByDigestOnly bool     `toml:"mirror-by-digest-only"`
		Mirrors            []mirror `toml:"mirror,omitempty"`
	}
	type doc struct {
		Search    []string   `toml:"unqualified-search-registries,omitempty"`
		Mode      string     `toml:"short-name-mode,omitempty"`
		Registies []registry `toml:"registry,omitempty"`
	}
	d := doc{Search: c.UnqualifiedSearch, Mode: c.ShortNameMode}
	for _, r := range c.Registries {
		e := registry{Prefix: r.Prefix, Insecure: r.Insecure, Blocked: r.Blocked, MirrorByDigestOnly: r.MirrorByDigestOnly}
		if r.LocationSet {
			e.Location = r.Location
		}
		for _, m := range r.Mirrors {
			e.Mirrors = append(e.Mirrors, mirror{Location: m.Location, Insecure: m.Insecure, PullFrom: string(m.PullFrom)})
		}
		d.Registies = append(d.Registies, e)
	}
	b, err := toml.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
