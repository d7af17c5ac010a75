package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Parse reads policy.json strictly: the version must be 1, unknown fields,
// duplicate fields or scopes, bad requirement types and malformed key IDs
// are errors, each naming the line and column of the offending part
// (file: the name used in messages). A missing "default" means reject.
func Parse(file string, b []byte) (*Policy, error) {
	if len(b) > MaxPolicySize {
		return nil, fmt.Errorf("%s: larger than %d bytes: %w", file, MaxPolicySize, ErrInvalid)
	}
	p := &parser{file: file, b: b, dec: json.NewDecoder(bytes.NewReader(b))}
	p.dec.UseNumber()
	pol, err := p.policy()
	if err != nil {
		return nil, err
	}
	return pol, nil
}

// parser walks the document token by token, so that every error knows
// where it is (json.Decoder.DisallowUnknownFields does not say).
type parser struct {
	file string
	b    []byte
	dec  *json.Decoder
}

// errorAt formats an error at byte offset off.
func (p *parser) errorAt(off int64, format string, args ...any) error {
	off = min(max(off, 0), int64(len(p.b)))
	line := 1 + bytes.Count(p.b[:off], []byte("\n"))
	col := off - int64(bytes.LastIndexByte(p.b[:off], '\n'))
	return fmt.Errorf("%s:%d:%d: %s: %w", p.file, line, col, fmt.Sprintf(format, args...), ErrInvalid)
}

// skip returns the offset of the next token at or after off: past
// whitespace and the separators the decoder has not consumed yet.
func (p *parser) skip(off int64) int64 {
	for off < int64(len(p.b)) && strings.IndexByte(" \t\r\n,:", p.b[off]) >= 0 {
		off++
	}
	return off
}

// next reads a token and returns it with its start offset.
func (p *parser) next() (json.Token, int64, error) {
	off := p.skip(p.dec.InputOffset())
	tok, err := p.dec.Token()
	if err != nil {
		var se *json.SyntaxError
		switch {
		case errors.As(err, &se):
			return nil, se.Offset, p.errorAt(se.Offset, "%v", se)
		case errors.Is(err, io.EOF):
			return nil, off, p.errorAt(off, "unexpected end of file")
		}
		return nil, off, p.errorAt(off, "%v", err)
	}
	return tok, off, nil
}

func (p *parser) delim(want json.Delim, what string) (int64, error) {
	tok, off, err := p.next()
	if err != nil {
		return off, err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return off, p.errorAt(off, "%s must be %s, found %s", what, kind(want), describe(tok))
	}
	return off, nil
}

func kind(d json.Delim) string {
	if d == '[' {
		return "a list"
	}
	return "an object"
}

func describe(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			return "an object"
		case '[':
			return "a list"
		}
		return fmt.Sprintf("%q", string(v))
	case string:
		return fmt.Sprintf("the string %q", v)
	case json.Number:
		return "the number " + v.String()
	case bool:
		return fmt.Sprintf("%v", v)
	case nil:
		return "null"
	}
	return fmt.Sprintf("%v", tok)
}

// object reads an object's members, calling field for each with the
// key's offset; field must consume the value. Keys may not repeat.
func (p *parser) object(what string, field func(key string, off int64) error) error {
	if _, err := p.delim('{', what); err != nil {
		return err
	}
	seen := map[string]bool{}
	for p.dec.More() {
		tok, off, err := p.next()
		if err != nil {
			return err
		}
		key := tok.(string) // the decoder guarantees object keys are strings
		if seen[key] {
			return p.errorAt(off, "%s has %q twice", what, key)
		}
		seen[key] = true
		if err := field(key, off); err != nil {
			return err
		}
	}
	_, err := p.delim('}', what)
	return err
}

func (p *parser) policy() (*Policy, error) {
	pol := New()
	version := false
	err := p.object("the policy", func(key string, off int64) error {
		switch key {
		case "version":
			tok, voff, err := p.next()
			if err != nil {
				return err
			}
			n, ok := tok.(json.Number)
			if !ok {
				return p.errorAt(voff, "\"version\" must be the number %d, found %s", Version, describe(tok))
			}
			if n.String() != fmt.Sprint(Version) {
				return p.errorAt(voff, "version %s is not supported; this karman reads version %d", n, Version)
			}
			version = true
			return nil
		case "default":
			r, err := p.requirement(`"default"`)
			if err != nil {
				return err
			}
			pol.Default = r
			return nil
		case "scopes":
			norms := map[string]string{}
			return p.object(`"scopes"`, func(scope string, soff int64) error {
				norm, err := NormalizeScope(scope)
				if err != nil {
					return p.errorAt(soff, "%v", strings.TrimSuffix(err.Error(), ": "+ErrInvalid.Error()))
				}
				if prev, ok := norms[norm]; ok {
					return p.errorAt(soff, "scope %q is the same as scope %q", scope, prev)
				}
				norms[norm] = scope
				r, err := p.requirement(fmt.Sprintf("scope %q", scope))
				if err != nil {
					return err
				}
				pol.Scopes = append(pol.Scopes, Scope{Name: scope, Requirement: r, norm: norm})
				return nil
			})
		}
		return p.errorAt(off, "unknown field %q (the policy has \"version\", \"default\" and \"scopes\")", key)
	})
	if err != nil {
		return nil, err
	}
	off := p.skip(p.dec.InputOffset())
	if tok, err := p.dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, p.errorAt(off, "unexpected data after the policy object")
		}
		return nil, p.errorAt(off, "unexpected %s after the policy object", describe(tok))
	}
	if !version {
		return nil, p.errorAt(0, "no \"version\"; write \"version\": %d", Version)
	}
	return pol, nil
}

func (p *parser) requirement(what string) (Requirement, error) {
	var r Requirement
	start := p.skip(p.dec.InputOffset())
	hasType := false
	err := p.object(what, func(key string, off int64) error {
		switch key {
		case "type":
			tok, voff, err := p.next()
			if err != nil {
				return err
			}
			s, ok := tok.(string)
			if !ok {
				return p.errorAt(voff, "%s: \"type\" must be a string, found %s", what, describe(tok))
			}
			r.Type = Type(s)
			hasType = true
			if err := r.validateType(); err != nil {
				return p.errorAt(voff, "%s: %v", what, err)
			}
			return nil
		case "keys":
			if _, err := p.delim('[', what+": \"keys\""); err != nil {
				return err
			}
			r.Keys = []string{}
			for p.dec.More() {
				tok, koff, err := p.next()
				if err != nil {
					return err
				}
				s, ok := tok.(string)
				if !ok {
					return p.errorAt(koff, "%s: a key must be a key ID string, found %s", what, describe(tok))
				}
				if !isKeyID(s) {
					return p.errorAt(koff, "%s: key %q is not a key ID (64 lowercase hex digits, as `karman trust list` shows)", what, s)
				}
				for _, k := range r.Keys {
					if k == s {
						return p.errorAt(koff, "%s: key %s is listed twice", what, s)
					}
				}
				r.Keys = append(r.Keys, s)
			}
			_, err := p.delim(']', what+": \"keys\"")
			return err
		}
		return p.errorAt(off, "%s: unknown field %q (a requirement has \"type\" and \"keys\")", what, key)
	})
	if err != nil {
		return r, err
	}
	if !hasType {
		return r, p.errorAt(start, "%s: no \"type\" (want \"signed\", \"insecure-accept-anything\" or \"reject\")", what)
	}
	if err := r.validate(); err != nil {
		return r, p.errorAt(start, "%s: %v", what, err)
	}
	return r, nil
}

func (r Requirement) validateType() error {
	switch r.Type {
	case Signed, InsecureAcceptAnything, Reject:
		return nil
	}
	return fmt.Errorf("unknown requirement type %q (want \"signed\", \"insecure-accept-anything\" or \"reject\")", r.Type)
}
