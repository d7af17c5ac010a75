package cosign

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxJSONDepth bounds the nesting of every JSON document read here.
const maxJSONDepth = 32

// checkJSON reports an error unless b is exactly one JSON value, nested at
// most maxJSONDepth deep, in which no object has two members whose names
// are equal or differ only in case. encoding/json matches member names to
// struct fields case-insensitively and keeps the last duplicate, so both
// would let two parsers read different documents from the same bytes.
func checkJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := walkJSON(dec, 0); err == io.EOF {
		return errors.New("truncated JSON")
	} else if err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

func walkJSON(dec *json.Decoder, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	if depth >= maxJSONDepth {
		return fmt.Errorf("JSON nested more than %d deep", maxJSONDepth)
	}
	if delim == '{' {
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			name, _ := tok.(string)
			key := foldName(name)
			if seen[key] {
				return fmt.Errorf("duplicate member %q", name)
			}
			seen[key] = true
			if err := walkJSON(dec, depth+1); err != nil {
				return err
			}
		}
	} else {
		for dec.More() {
			if err := walkJSON(dec, depth+1); err != nil {
				return err
			}
		}
	}
	_, err = dec.Token() // the closing delimiter
	return err
}

// foldName maps names that strings.EqualFold considers equal to the same
// string: each rune becomes the smallest rune of its case-folding orbit.
func foldName(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToUpper(s) // the smallest rune of an ASCII letter's orbit
	}
	var b strings.Builder
	for _, r := range s {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		b.WriteRune(m)
	}
	return b.String()
}

// object decodes raw, which must be a JSON object, into its members. When
// allowed is non-nil, a member not listed in it is an error; every name in
// required must be present. Names match exactly. The document raw belongs
// to must have passed checkJSON.
func object(raw json.RawMessage, what string, allowed []string, required ...string) (map[string]json.RawMessage, error) {
	if !isKind(raw, '{') {
		return nil, fmt.Errorf("%s is not a JSON object", what)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s: %v", what, err)
	}
	if allowed != nil {
		for k := range m {
			if !slices.Contains(allowed, k) {
				return nil, fmt.Errorf("%s has an unknown member %q", what, k)
			}
		}
	}
	for _, k := range required {
		if _, ok := m[k]; !ok {
			return nil, fmt.Errorf("%s has no %q", what, k)
		}
	}
	return m, nil
}

// str decodes raw, which must be a JSON string.
func str(raw json.RawMessage, what string) (string, error) {
	if !isKind(raw, '"') {
		return "", fmt.Errorf("%s is not a JSON string", what)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%s: %v", what, err)
	}
	return s, nil
}

// isKind reports whether the JSON value raw starts with c ('{', '[', '"').
func isKind(raw json.RawMessage, c byte) bool {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	return len(raw) > 0 && raw[0] == c
}

// isNull reports whether the JSON value raw is null.
func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}
