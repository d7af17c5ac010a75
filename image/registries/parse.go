package registries

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/pelletier/go-toml/v2"
)

// The keys of each table, as the format names them. Keys karman knows
// but cannot honour are refused with a reason (unsupported).
var (
	topKeys      = []string{"unqualified-search-registries", "short-name-mode", "aliases", "registry"}
	registryKeys = []string{"prefix", "location", "insecure", "blocked", "mirror-by-digest-only", "mirror"}
	mirrorKeys   = []string{"location", "insecure", "pull-from-mirror"}

	unsupported = map[string]string{
		"credential-helpers":                 "karman reads registry credentials from the Docker configuration (~/.docker/config.json) and its credential helpers; remove the key",
		"additional-layer-store-auth-helper": "karman has no additional layer store; remove the key",
		"registries":                         "the version 1 tables ([registries.search], [registries.insecure], [registries.block]) are not read; write [[registry]] entries (version 2) instead",
		"proxy":                              "karman uses HTTPS_PROXY, HTTP_PROXY and NO_PROXY from its environment for every registry; remove the key",
	}
)

// maxProblems is how many problems an error lists.
const maxProblems = 20

type parser struct {
	path  string
	lines lineIndex
	errs  problems
	at    []int // the line of each of errs
}

// fail records a problem with the value at key (a path made by key()).
func (p *parser) fail(at string, format string, args ...any) {
	p.failLine(p.lines.of(at), format, args...)
}

func (p *parser) failLine(n int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.at = append(p.at, n)
	if n > 0 {
		p.errs = append(p.errs, fmt.Errorf("%s line %d: %s", p.path, n, msg))
		return
	}
	p.errs = append(p.errs, fmt.Errorf("%s: %s", p.path, msg))
}

// sortedErrs are the problems in the order of their lines.
func (p *parser) sortedErrs() problems {
	idx := make([]int, len(p.errs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return p.at[a] - p.at[b] })
	out := make(problems, 0, min(len(idx), maxProblems+1))
	for _, j := range idx[:min(len(idx), maxProblems)] {
		out = append(out, p.errs[j])
	}
	if n := len(idx) - maxProblems; n > 0 {
		out = append(out, fmt.Errorf("and %d more problems", n))
	}
	return out
}

func parse(path string, data []byte) (*Config, error) {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, _ := de.Position()
			return nil, fmt.Errorf("%s line %d: %s; fix the TOML syntax: %w", path, line, printable(strings.TrimPrefix(de.Error(), "toml: ")), ErrInvalid)
		}
		return nil, fmt.Errorf("%s: %s: %w", path, printable(err.Error()), ErrInvalid)
	}
	p := &parser{path: path, lines: keyLines(data)}
	c := &Config{Path: path}
	for _, k := range p.sorted(doc, "") {
		v := doc[k]
		at := key(k)
		switch k {
		case "unqualified-search-registries":
			for i, s := range p.strings(at, k, v) {
				if msg := checkHost(s); msg != "" {
					p.fail(at, "unqualified-search-registries[%d] %q %s", i, s, msg)
				}
				c.UnqualifiedSearch = append(c.UnqualifiedSearch, s)
			}
		case "short-name-mode":
			s, ok := p.str(at, k, v)
			if ok && !slices.Contains([]string{"", "enforcing", "permissive", "disabled"}, s) {
				p.fail(at, "short-name-mode %q is not enforcing, permissive or disabled", s)
			}
			c.ShortNameMode = s
		case "aliases":
			t, ok := v.(map[string]any)
			if !ok {
				p.fail(at, "aliases must be a table of short name = \"reference\", not %s", typeName(v))
				break
			}
			for _, a := range p.sorted(t, k) {
				p.str(key(k, a), "alias "+strconv.Quote(a), t[a])
			}
		case "registry":
			arr, ok := v.([]any)
			if !ok {
				p.fail(at, "registry must be [[registry]] tables, not %s", typeName(v))
				break
			}
			for i, e := range arr {
				if r, ok := p.registry(i, e); ok {
					c.Registries = append(c.Registries, r)
				}
			}
		default:
			p.unknown(at, k, "", topKeys)
		}
	}
	seen := map[string]int{}
	for _, r := range c.Registries {
		if first, dup := seen[r.Prefix]; dup {
			p.failLine(r.Line, "prefix %q is also the prefix of the entry on line %d; merge the two entries", r.Prefix, first)
		}
		seen[r.Prefix] = r.Line
	}
	if len(p.errs) > 0 {
		return nil, fmt.Errorf("%w: %w", p.sortedErrs(), ErrInvalid)
	}
	return c, nil
}

// registry reads the i-th [[registry]] table.
func (p *parser) registry(i int, v any) (Registry, bool) {
	at := key("registry", i)
	t, ok := v.(map[string]any)
	if !ok {
		p.fail(at, "registry[%d] must be a table, not %s", i, typeName(v))
		return Registry{}, false
	}
	n := len(p.errs)
	r := Registry{Line: p.lines.of(at)}
	var prefix, location string
	var mirrorAt []string
	for _, k := range p.sorted(t, at) {
		v, kat := t[k], key("registry", i, k)
		switch k {
		case "prefix":
			prefix, _ = p.str(kat, k, v)
		case "location":
			location, _ = p.str(kat, k, v)
			r.LocationSet = true
		case "insecure":
			r.Insecure = p.boolean(kat, k, v)
		case "blocked":
			r.Blocked = p.boolean(kat, k, v)
		case "mirror-by-digest-only":
			r.MirrorByDigestOnly = p.boolean(kat, k, v)
		case "mirror":
			arr, ok := v.([]any)
			if !ok {
				p.fail(kat, "mirror must be [[registry.mirror]] tables, not %s", typeName(v))
				break
			}
			for j, e := range arr {
				if m, ok := p.mirror(i, j, e); ok {
					r.Mirrors = append(r.Mirrors, m)
					mirrorAt = append(mirrorAt, key("registry", i, "mirror", j, "pull-from-mirror"))
				}
			}
		default:
			p.unknown(kat, k, "[[registry]] ", registryKeys)
		}
	}
	switch {
	case prefix == "" && location == "":
		p.fail(at, "a [[registry]] entry needs a prefix or a location")
	case prefix != "":
		canon, wild, msg := checkName(prefix, true)
		if msg != "" {
			p.fail(key("registry", i, "prefix"), "prefix %q %s", prefix, msg)
		}
		r.Prefix, r.Wildcard = canon, wild
	}
	if location != "" {
		canon, _, msg := checkName(location, false)
		if msg != "" {
			p.fail(key("registry", i, "location"), "location %q %s", location, msg)
		}
		r.Location = canon
		if r.Wildcard {
			p.fail(key("registry", i, "location"), "a wildcard prefix (%s) takes no location: its references are used as they are; remove location, or give the prefix without \"*.\"", prefix)
		}
	} else if r.LocationSet && r.Wildcard {
		r.LocationSet = false // "": what a wildcard entry has anyway
	} else if r.LocationSet {
		p.fail(key("registry", i, "location"), "location is empty; remove it, or name a registry (HOST[:PORT][/PATH])")
	}
	switch {
	case prefix == "":
		r.Prefix = r.Location
	case location == "" && !r.Wildcard:
		r.Location = r.Prefix
	}
	if r.MirrorByDigestOnly {
		for j, m := range r.Mirrors {
			if m.PullFrom != "" {
				p.fail(mirrorAt[j], "pull-from-mirror cannot be given when the [[registry]] entry sets mirror-by-digest-only = true; keep one of the two")
			}
		}
	}
	return r, len(p.errs) == n
}

// mirror reads the j-th [[registry.mirror]] table of the i-th registry.
func (p *parser) mirror(i, j int, v any) (Mirror, bool) {
	at := key("registry", i, "mirror", j)
	t, ok := v.(map[string]any)
	if !ok {
		p.fail(at, "mirror[%d] must be a table, not %s", j, typeName(v))
		return Mirror{}, false
	}
	n := len(p.errs)
	m := Mirror{Line: p.lines.of(at)}
	for _, k := range p.sorted(t, at) {
		v, kat := t[k], key("registry", i, "mirror", j, k)
		switch k {
		case "location":
			s, ok := p.str(kat, k, v)
			if !ok {
				break
			}
			canon, _, msg := checkName(s, false)
			if msg != "" {
				p.fail(kat, "mirror location %q %s", s, msg)
			}
			m.Location = canon
		case "insecure":
			m.Insecure = p.boolean(kat, k, v)
		case "pull-from-mirror":
			s, ok := p.str(kat, k, v)
			if ok && !slices.Contains([]PullFrom{All, DigestOnly, TagOnly}, PullFrom(s)) {
				p.fail(kat, "pull-from-mirror %q is not all, digest-only or tag-only", s)
			}
			m.PullFrom = PullFrom(s)
		default:
			p.unknown(kat, k, "[[registry.mirror]] ", mirrorKeys)
		}
	}
	if _, ok := t["location"]; !ok {
		p.fail(at, "a [[registry.mirror]] needs a location")
	}
	return m, len(p.errs) == n
}

// unknown refuses key k of a table (in, e.g. "[[registry]] ") that knows
// the keys known.
func (p *parser) unknown(at, k, in string, known []string) {
	if why, ok := unsupported[k]; ok {
		p.fail(at, "%s%q is not supported: %s", in, k, why)
		return
	}
	p.fail(at, "unknown key %s%q; the keys are %s (see docs/images.md, \"Registry configuration\")", in, printable(k), strings.Join(known, ", "))
}

// sorted returns the keys of t in the order of their lines (table at).
func (p *parser) sorted(t map[string]any, at string) []string {
	ks := make([]string, 0, len(t))
	for k := range t {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, func(a, b string) int {
		if la, lb := p.lines.of(child(at, a)), p.lines.of(child(at, b)); la != lb {
			return la - lb
		}
		return strings.Compare(a, b)
	})
	return ks
}

func (p *parser) str(at, what string, v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		p.fail(at, "%s must be a string in quotes, not %s", what, typeName(v))
	}
	return s, ok
}

func (p *parser) boolean(at, what string, v any) bool {
	b, ok := v.(bool)
	if !ok {
		p.fail(at, "%s must be true or false, not %s", what, typeName(v))
	}
	return b
}

func (p *parser) strings(at, what string, v any) []string {
	arr, ok := v.([]any)
	if !ok {
		p.fail(at, "%s must be an array of strings, not %s", what, typeName(v))
		return nil
	}
	var out []string
	for i, e := range arr {
		if s, ok := p.str(at, fmt.Sprintf("%s[%d]", what, i), e); ok {
			out = append(out, s)
		}
	}
	return out
}

func typeName(v any) string {
	switch v := v.(type) {
	case string:
		return "the string " + strconv.Quote(v)
	case bool:
		return "the boolean " + strconv.FormatBool(v)
	case int64:
		return "the integer " + strconv.FormatInt(v, 10)
	case float64:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("a %T", v)
}

var (
	// component is a path component of a repository name, as the
	// distribution reference grammar has it.
	component = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	tagRE     = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	hostRE    = regexp.MustCompile(`^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$`)
)

// checkName checks a prefix or location: HOST[:PORT][/PATH][:TAG|@DIGEST],
// or for a prefix (wildcard) *.DOMAIN. It returns the name with
// index.docker.io written docker.io, and what is wrong ("" if nothing).
func checkName(s string, wildcard bool) (canon string, wild bool, msg string) {
	if s == "" {
		return "", false, "is empty"
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r > unicode.MaxASCII || r == 0x7f }) {
		return "", false, "holds a space, a control character or a character that is not ASCII"
	}
	if rest, ok := strings.CutPrefix(s, "*."); ok {
		if !wildcard {
			return "", false, "cannot have a wildcard (only a prefix can be *.DOMAIN)"
		}
		if strings.ContainsAny(rest, "*:/@[]") || !hostRE.MatchString(rest) {
			return "", false, "is not *.DOMAIN: a wildcard prefix has a domain after \"*.\" and no port, path, tag or digest"
		}
		return s, true, ""
	}
	if strings.Contains(s, "*") {
		return "", false, "has a \"*\" that is not the start of *.DOMAIN (the only wildcard the format has)"
	}
	host, path, hasPath := strings.Cut(s, "/")
	if msg := checkHost(host); msg != "" {
		return "", false, "does not start with a registry host: " + msg
	}
	canon = canonHost(host)
	if !hasPath {
		return canon, false, ""
	}
	repo, ref := path, ""
	if i := strings.IndexByte(path, '@'); i >= 0 {
		repo, ref = path[:i], path[i:]
		if _, err := name.NewDigest(s); err != nil {
			return "", false, "has a bad digest (sha256: and 64 hex digits)"
		}
	} else if i := strings.LastIndexByte(path, ':'); i >= 0 && !strings.Contains(path[i:], "/") {
		repo, ref = path[:i], path[i:]
		if !tagRE.MatchString(ref[1:]) {
			return "", false, "has a bad tag (letters, digits, _ . and -, at most 128)"
		}
	}
	for c := range strings.SplitSeq(repo, "/") {
		if !component.MatchString(c) {
			return "", false, fmt.Sprintf("has a bad repository path component %q (lower-case letters and digits, separated by ., _, __ or -)", c)
		}
	}
	if len(repo) > 255 {
		return "", false, "has a repository path longer than 255 characters"
	}
	return canon + "/" + path, false, ""
}

// checkHost checks a registry host with an optional port; it must look
// like one (a "." or ":" in it, or localhost), as karman's references
// must: anything else would be read as a path on Docker Hub.
func checkHost(h string) string {
	if !hostRE.MatchString(h) {
		return fmt.Sprintf("%q is not HOST[:PORT]", h)
	}
	if !strings.ContainsAny(h, ".:") && h != "localhost" {
		return fmt.Sprintf("%q is not a registry host (a host has a \".\" or a \":PORT\", or is localhost)", h)
	}
	port, hasPort := "", false
	if strings.HasPrefix(h, "[") {
		_, port, hasPort = strings.Cut(h, "]:")
	} else {
		_, port, hasPort = strings.Cut(h, ":")
	}
	if n, err := strconv.Atoi(port); hasPort && (err != nil || n < 1 || n > 65535) {
		return fmt.Sprintf("%q has a port that is not 1 to 65535", h)
	}
	if _, err := name.NewRegistry(h, name.StrictValidation); err != nil {
		return fmt.Sprintf("%q is not a registry host", h)
	}
	return ""
}

// canonHost writes Docker Hub's registry the way the format does.
func canonHost(h string) string {
	if h == name.DefaultRegistry {
		return "docker.io"
	}
	return h
}

// printable quotes s if it holds what would break a one-line message.
func printable(s string) string {
	if strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return strconv.Quote(s)
	}
	return s
}
