package strictjson

import (
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	deep := strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1)
	tests := []struct {
		in, err string
	}{
		{`{"a":1,"b":[1,{"c":null}]}`, ""},
		{`{"a":1,"a":2}`, `duplicate member "a"`},
		{`{"a":{"x":1,"X":2}}`, `duplicate member "x" (as "X"`},
		{`{"s":1,"ſ":2}`, "duplicate"}, // U+017F folds to s, as encoding/json matches it
		{`{"K":1,"K":2}`, "duplicate"}, // U+212A Kelvin
		{`[{"a":1},{"a":1}]`, ""},
		{`{} {}`, "after the JSON value"},
		{`{"a":`, "truncated"},
		{deep, "nested"},
		{strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth), ""},
	}
	for _, tt := range tests {
		err := Check([]byte(tt.in))
		if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("Check(%.40s) = %v, want %q", tt.in, err, tt.err)
		}
		if tt.err != "" && strings.Contains(tt.err, "duplicate") && !errors.Is(err, ErrDuplicate) {
			t.Errorf("Check(%.40s) = %v, want it to wrap ErrDuplicate", tt.in, err)
		}
	}
}
