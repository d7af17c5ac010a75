package fetch

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestTerminalProgress(t *testing.T) {
	var out bytes.Buffer
	term := NewTerminal(&out)
	a := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}
	b := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("b", 64)}
	la, lb := term.Layer(a, 2_000_000), term.Layer(b, 1000)
	la.Add(1_000_000)
	la.Add(1_000_000)
	la.Done(true, nil)
	lb.Done(false, errors.New("boom"))
	term.Stop()
	term.Stop() // idempotent
	s := out.String()
	// The final frame: one line per layer, in place (cursor moved up).
	last := s[strings.LastIndex(s, "aaaaaaaaaaaa"):]
	for _, want := range []string{"aaaaaaaaaaaa  done", "2.0 /    2.0 MB 100.0%", "bbbbbbbbbbbb  failed"} {
		if !strings.Contains(last, want) {
			t.Errorf("final frame %q lacks %q", last, want)
		}
	}
	if strings.Count(last, "\n") != 2 {
		t.Errorf("final frame has %d lines, want 2", strings.Count(last, "\n"))
	}
}
