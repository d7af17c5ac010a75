package image

import (
	"errors"
	"testing"
)

func TestParseReference(t *testing.T) {
	tests := []struct {
		in   string
		want Reference
		err  error
	}{
		{in: "127.0.0.1:5000/app", want: Reference{Transport: Registry, Name: "127.0.0.1:5000/app:latest"}},
		{in: "localhost/app:v1", want: Reference{Transport: Registry, Name: "localhost/app:v1"}},
		{in: "docker://reg.example/a/b:c", want: Reference{Transport: Registry, Name: "reg.example/a/b:c"}},
		{in: "reg.example/a@sha256:" + sixtyFour, want: Reference{Transport: Registry, Name: "reg.example/a@sha256:" + sixtyFour}},
		{in: "oci:/srv/layout", want: Reference{Transport: OCILayout, Name: "/srv/layout"}},
		{in: "oci:/srv/layout:v1", want: Reference{Transport: OCILayout, Name: "/srv/layout", Tag: "v1"}},
		{in: "oci:rel/dir:v1", want: Reference{Transport: OCILayout, Name: "rel/dir", Tag: "v1"}},
		{in: "docker-archive:/tmp/x.tar", want: Reference{Transport: DockerArchive, Name: "/tmp/x.tar"}},
		{in: "busybox", err: ErrInvalidReference},
		{in: "library/busybox:1", err: ErrInvalidReference},
		{in: "", err: ErrInvalidReference},
		{in: "oci:", err: ErrInvalidReference},
		{in: "docker-archive:", err: ErrInvalidReference},
		{in: "reg.example/UPPER:tag", err: ErrInvalidReference},
	}
	for _, tc := range tests {
		got, err := ParseReference(tc.in)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("ParseReference(%q) = %+v, %v; want %v", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseReference(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if again, err := ParseReference(got.String()); err != nil || again != got {
			t.Errorf("round trip of %q: %+v, %v", got.String(), again, err)
		}
	}
}

const sixtyFour = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
