package image

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseReference checks that every reference ParseReference accepts is
// printed by String in a form that parses back to the same reference, that
// a registry reference's name parses to itself (it is normalised), and that
// refusals wrap ErrInvalidReference.
func FuzzParseReference(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1:5000/app", "localhost/app:v1", "docker://reg.example/a/b:c",
		"reg.example/a@sha256:" + sixtyFour, "reg.example/a:t@sha256:" + sixtyFour,
		"oci:/srv/layout", "oci:/srv/layout:v1", "oci:rel/dir:v1", "oci:/a:b/c", "oci::tag", "oci:/x:", "oci:x::", "oci:a:b:",
		"docker-archive:/tmp/x.tar", "docker-archive:a:b", "busybox", "library/busybox:1", "",
		"oci:", "docker-archive:", "reg.example/UPPER:tag", "[::1]:5000/a", "docker://", "a\nb/c", "docker://x\n", "a.b/c:" + strings.Repeat("t", 130),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReference(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidReference) {
				t.Fatalf("ParseReference(%q): %v does not wrap ErrInvalidReference", s, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("ParseReference(%q): the error is not one line: %q", s, err)
			}
			return
		}
		if r.Name == "" {
			t.Fatalf("ParseReference(%q) = %#v: empty name", s, r)
		}
		if r.Tag != "" && r.Transport != OCILayout {
			t.Fatalf("ParseReference(%q) = %#v: a tag outside an OCI layout", s, r)
		}
		again, err := ParseReference(r.String())
		if err != nil {
			t.Fatalf("ParseReference(%q) = %#v, whose String %q does not parse: %v", s, r, r.String(), err)
		}
		if again != r {
			t.Fatalf("ParseReference(%q) = %#v, but its String %q parses to %#v", s, r, r.String(), again)
		}
		if r.Transport == Registry {
			if n, err := ParseReference(r.Name); err != nil || n != r {
				t.Fatalf("ParseReference(%q): the normalised name %q parses to %#v, %v", s, r.Name, n, err)
			}
		}
	})
}
