package registries

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func mustParse(t *testing.T, doc string) *Config {
	t.Helper()
	c, err := Parse("r.conf", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// refs returns the references of eps, "M " before a mirror's, "I " before
// an insecure one's.
func refs(eps []Endpoint) []string {
	var out []string
	for _, e := range eps {
		s := e.Ref
		if e.Insecure {
			s = "I " + s
		}
		if e.Mirror {
			s = "M " + s
		}
		out = append(out, s)
	}
	return out
}

func TestResolve(t *testing.T) {
	c := mustParse(t, `
[[registry]]
prefix = "registry.k8s.io"
location = "127.0.0.1:5000"
insecure = true

[[registry]]
prefix = "registry.k8s.io/e2e-test-images"
location = "127.0.0.1:5001/e2e"

[[registry]]
prefix = "gcr.io"
[[registry.mirror]]
location = "127.0.0.1:6000/gcr"
[[registry.mirror]]
location = "127.0.0.1:6001"
insecure = true

[[registry]]
prefix = "quay.example"
location = "quay.example"
[[registry.mirror]]
location = "digests.example/q"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "tags.example/q"
pull-from-mirror = "tag-only"

[[registry]]
prefix = "pinned.example"
mirror-by-digest-only = true
[[registry.mirror]]
location = "m.example"

[[registry]]
location = "docker.io/library"
[[registry.mirror]]
location = "hub.example/library"

[[registry]]
prefix = "*.corp.example"
insecure = true
[[registry.mirror]]
location = "cache.example/corp"

[[registry]]
prefix = "a.corp.example"
location = "a-mirror.example"

[[registry]]
prefix = "*.plain.example"
insecure = true

[[registry]]
prefix = "app.example/team/app:1.0"
location = "app.example/team/app:1.0-fixed"
`)
	for _, tc := range []struct {
		ref  string
		want []string
	}{
		// No entry: as it is.
		{"other.example/app:1", []string{"other.example/app:1"}},
		// The rest of the path is kept.
		{"registry.k8s.io/pause:3.9", []string{"I 127.0.0.1:5000/pause:3.9"}},
		{"registry.k8s.io/pause@" + digest, []string{"I 127.0.0.1:5000/pause@" + digest}},
		// The longest prefix decides.
		{"registry.k8s.io/e2e-test-images/busybox:1.29-2", []string{"127.0.0.1:5001/e2e/busybox:1.29-2"}},
		// Only at a separator: e2e-test-images-x is not under e2e-test-images.
		{"registry.k8s.io/e2e-test-images-x/y:1", []string{"I 127.0.0.1:5000/e2e-test-images-x/y:1"}},
		// A host prefix does not match another host, nor the host with a port.
		{"registry.k8s.io.evil.example/pause:3.9", []string{"registry.k8s.io.evil.example/pause:3.9"}},
		{"registry.k8s.io:443/pause:3.9", []string{"registry.k8s.io:443/pause:3.9"}},
		// Mirrors in order; without location = the primary is not tried.
		{"gcr.io/k8s-staging-cri-tools/test-image-tags:1", []string{"M 127.0.0.1:6000/gcr/k8s-staging-cri-tools/test-image-tags:1", "M I 127.0.0.1:6001/k8s-staging-cri-tools/test-image-tags:1"}},
		// pull-from-mirror; location written: the primary last.
		{"quay.example/app@" + digest, []string{"M digests.example/q/app@" + digest, "quay.example/app@" + digest}},
		{"quay.example/app:2", []string{"M tags.example/q/app:2", "quay.example/app:2"}},
		// mirror-by-digest-only: a tag has no mirror, so the prefix itself.
		{"pinned.example/app:2", []string{"pinned.example/app:2"}},
		{"pinned.example/app@" + digest, []string{"M m.example/app@" + digest}},
		// Docker Hub, as image.ParseReference normalises it.
		{"index.docker.io/library/busybox:latest", []string{"M hub.example/library/busybox:latest", "index.docker.io/library/busybox:latest"}},
		{"index.docker.io/someone/busybox:latest", []string{"index.docker.io/someone/busybox:latest"}},
		// Wildcards: any depth of subdomain; a wildcard entry writes no
		// location, so only its mirrors.
		{"b.corp.example/x/y:1", []string{"M cache.example/corp/x/y:1"}},
		{"deep.b.corp.example/x:1", []string{"M cache.example/corp/x:1"}},
		{"corp.example/x:1", []string{"corp.example/x:1"}},
		{"x.plain.example/app:1", []string{"I x.plain.example/app:1"}},
		// A host beats a wildcard matching as long a part.
		{"a.corp.example/x:1", []string{"a-mirror.example/x:1"}},
		// A prefix with a tag.
		{"app.example/team/app:1.0", []string{"app.example/team/app:1.0-fixed"}},
		{"app.example/team/app:1.01", []string{"app.example/team/app:1.01"}},
	} {
		eps, err := c.Resolve(tc.ref)
		if err != nil {
			t.Errorf("%s: %v", tc.ref, err)
			continue
		}
		if d := cmp.Diff(tc.want, refs(eps)); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.ref, d)
		}
	}
}

func TestResolveEndpointNames(t *testing.T) {
	c := mustParse(t, "[[registry]]\nprefix = \"gcr.io\"\n\n[[registry.mirror]]\nlocation = \"127.0.0.1:6000\"\n")
	eps, err := c.Resolve("gcr.io/a/b:1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := eps[0].String(), "mirror 127.0.0.1:6000/a/b:1 (r.conf line 4)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestResolveBlocked(t *testing.T) {
	c := mustParse(t, `
[[registry]]
prefix = "registry.k8s.io"
location = "127.0.0.1:5000"

[[registry]]
prefix = "registry.k8s.io/forbidden"
blocked = true
[[registry.mirror]]
location = "127.0.0.1:5001"

[[registry]]
prefix = "*.blocked.example"
blocked = true
`)
	for _, ref := range []string{"registry.k8s.io/forbidden/app:1", "registry.k8s.io/forbidden:1", "x.blocked.example/app:1"} {
		_, err := c.Resolve(ref)
		if !errors.Is(err, ErrBlocked) {
			t.Fatalf("%s: %v, want ErrBlocked", ref, err)
		}
		if !strings.Contains(err.Error(), "r.conf line") || !strings.Contains(err.Error(), ref) {
			t.Errorf("%s: %q does not name the file, line and image", ref, err)
		}
	}
	if _, err := c.Resolve("registry.k8s.io/forbidden-not/app:1"); err != nil {
		t.Errorf("a sibling of a blocked prefix: %v", err)
	}
}

func TestResolveBadRewrite(t *testing.T) {
	c := mustParse(t, "[[registry]]\nprefix = \"a.example\"\nlocation = \"b.example/app:1\"\n")
	if _, err := c.Resolve("a.example/x:2"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("a rewrite that is no reference: %v", err)
	}
}
