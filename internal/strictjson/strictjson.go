package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxDepth bounds the nesting of the documents Check accepts.
const MaxDepth = 32

// ErrDuplicate is wrapped by the error of Check for an object with two
// members of the same name (equal or differing only in case).
var ErrDuplicate = errors.New("duplicate member")

// Check reports an error unless b is exactly one JSON value, nested at
// most MaxDepth deep, in which no object has two members whose names are
// equal or differ only in case (as encoding/json compares them).
func Check(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := walk(dec, 0); err == io.EOF {
		return errors.New("truncated JSON")
	} else if err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

func walk(dec *json.Decoder, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	if depth >= MaxDepth {
		return fmt.Errorf("JSON nested more than %d deep", MaxDepth)
	}
	if delim == '{' {
		seen := map[string]string{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			name, _ := tok.(string)
			key := foldName(name)
			if first, dup := seen[key]; dup {
				if first == name {
					return fmt.Errorf("%w %q", ErrDuplicate, name)
				}
				return fmt.Errorf("%w %q (as %q, which differs only in case)", ErrDuplicate, first, name)
			}
			seen[key] = name
			if err := walk(dec, depth+1); err != nil {
				return err
			}
		}
	} else {
		for dec.More() {
			if err := walk(dec, depth+1); err != nil {
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
