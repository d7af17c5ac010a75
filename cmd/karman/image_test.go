package main

import (
	"strings"
	"testing"
)

func TestShortenDigests(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	for in, want := range map[string]string{
		"layer blob sha256:" + hex + " is missing": "layer blob abababababab is missing",
		"its 4 bytes have digest sha256:" + hex:    "its 4 bytes have digest abababababab",
		"sha256:short and sha256:" + hex + hex[:3]: "sha256:short and abababababababa",
		"no digest": "no digest",
	} {
		if got := shortenDigests(in); got != want {
			t.Errorf("shortenDigests(%q) = %q, want %q", in, got, want)
		}
	}
}
