package cosign

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
)

// object decodes raw, which must be a JSON object, into its members. When
// allowed is non-nil, a member not listed in it is an error; every name in
// required must be present. Names match exactly. The document raw belongs
// to must have passed strictjson.Check.
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
