package registries

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	const doc = `# CRI-O style
unqualified-search-registries = ["docker.io", "quay.example:5000"]
short-name-mode = "enforcing"

[aliases]
"pause" = "registry.k8s.io/pause"

[[registry]]
prefix = "registry.k8s.io"
location = "127.0.0.1:5000"
insecure = true

[[registry]]
location = "index.docker.io/library"
blocked = false

[[registry.mirror]]
location = "mirror.example/hub"
insecure = true
pull-from-mirror = "digest-only"

[[registry.mirror]]
location = "[::1]:5001/hub"

[[registry]]
prefix = "*.internal.example"
blocked = true

[[registry]]
prefix = "quay.example/team/app:1.0"
mirror-by-digest-only = true
mirror = [{location = "m.example/app"}]
`
	c, err := Parse("registries.conf", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Path:              "registries.conf",
		UnqualifiedSearch: []string{"docker.io", "quay.example:5000"},
		ShortNameMode:     "enforcing",
		Registries: []Registry{
			{Prefix: "registry.k8s.io", Location: "127.0.0.1:5000", LocationSet: true, Insecure: true, Line: 8},
			{Prefix: "docker.io/library", Location: "docker.io/library", LocationSet: true, Line: 13, Mirrors: []Mirror{
				{Location: "mirror.example/hub", Insecure: true, PullFrom: DigestOnly, Line: 17},
				{Location: "[::1]:5001/hub", Line: 22},
			}},
			{Prefix: "*.internal.example", Wildcard: true, Blocked: true, Line: 25},
			{Prefix: "quay.example/team/app:1.0", Location: "quay.example/team/app:1.0", MirrorByDigestOnly: true, Line: 29, Mirrors: []Mirror{
				{Location: "m.example/app", Line: 32},
			}},
		},
	}
	if d := cmp.Diff(want, c); d != "" {
		t.Fatalf("Parse (-want +got):\n%s", d)
	}
}

// TestParseRefusals: every unknown key, unsupported key and bad value is
// refused, on one line, naming the file and the line, with ErrInvalid.
func TestParseRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string // substrings of the error
	}{
		{"syntax", "[[registry]\nprefix = 1", []string{"r.conf line 1:", "fix the TOML syntax"}},
		{"duplicate key", "[[registry]]\nprefix = \"a.example\"\nprefix = \"b.example\"\n", []string{"r.conf line 3:"}},
		{"unknown top key", "\n\nmirrors = []\n", []string{"r.conf line 3: unknown key \"mirrors\"", "unqualified-search-registries, short-name-mode, aliases, registry"}},
		{"unknown registry key", "[[registry]]\nprefix = \"a.example\"\nlocaton = \"b.example\"\n", []string{"r.conf line 3: unknown key [[registry]] \"locaton\"", "prefix, location, insecure"}},
		{"unknown mirror key", "[[registry]]\nprefix = \"a.example\"\n[[registry.mirror]]\nlocation = \"m.example\"\nweight = 2\n", []string{"r.conf line 5: unknown key [[registry.mirror]] \"weight\""}},
		{"proxy", "[[registry]]\nprefix = \"a.example\"\nproxy = \"http://p:3128\"\n", []string{"line 3:", "\"proxy\" is not supported", "HTTPS_PROXY"}},
		{"mirror proxy", "[[registry]]\nprefix = \"a.example\"\n[[registry.mirror]]\nlocation = \"m.example\"\nproxy = \"x\"\n", []string{"line 5:", "\"proxy\" is not supported"}},
		{"credential helpers", "credential-helpers = [\"containers-auth.json\"]\n", []string{"line 1:", "Docker configuration"}},
		{"version 1", "[registries.search]\nregistries = ['a.example']\n", []string{"line 1:", "version 1", "[[registry]]"}},
		{"bad bool", "[[registry]]\nprefix = \"a.example\"\ninsecure = \"yes\"\n", []string{"line 3: insecure must be true or false, not the string \"yes\""}},
		{"bad string", "[[registry]]\nprefix = 5\n", []string{"line 2: prefix must be a string in quotes, not the integer 5"}},
		{"no prefix or location", "[[registry]]\ninsecure = true\n", []string{"line 1: a [[registry]] entry needs a prefix or a location"}},
		{"empty location", "[[registry]]\nprefix = \"a.example\"\nlocation = \"\"\n", []string{"line 3: location is empty"}},
		{"short host", "[[registry]]\nprefix = \"myregistry/app\"\n", []string{"line 2:", "not a registry host"}},
		{"bad path", "[[registry]]\nprefix = \"a.example/Team\"\n", []string{"line 2:", "bad repository path component \"Team\""}},
		{"empty component", "[[registry]]\nprefix = \"a.example/team/\"\n", []string{"line 2:", "bad repository path component \"\""}},
		{"bad port", "[[registry]]\nprefix = \"a.example:99999\"\n", []string{"line 2:", "port"}},
		{"bad wildcard", "[[registry]]\nprefix = \"*.example.com/foo\"\n", []string{"line 2:", "*.DOMAIN"}},
		{"inner wildcard", "[[registry]]\nprefix = \"example.*.com\"\n", []string{"line 2:", "\"*\""}},
		{"wildcard location", "[[registry]]\nprefix = \"a.example\"\nlocation = \"*.example\"\n", []string{"line 3:", "cannot have a wildcard"}},
		{"wildcard with location", "[[registry]]\nprefix = \"*.example\"\nlocation = \"b.example\"\n", []string{"line 3:", "takes no location"}},
		{"control character", "[[registry]]\nprefix = \"a.example/x\\ny\"\n", []string{"line 2:", "control character"}},
		{"bad tag", "[[registry]]\nprefix = \"a.example/app:-x\"\n", []string{"line 2:", "bad tag"}},
		{"bad digest", "[[registry]]\nprefix = \"a.example/app@sha256:12\"\n", []string{"line 2:", "bad digest"}},
		{"mirror without location", "[[registry]]\nprefix = \"a.example\"\n[[registry.mirror]]\ninsecure = true\n", []string{"line 3: a [[registry.mirror]] needs a location"}},
		{"bad pull-from-mirror", "[[registry]]\nprefix = \"a.example\"\n[[registry.mirror]]\nlocation = \"m.example\"\npull-from-mirror = \"tags\"\n", []string{"line 5: pull-from-mirror \"tags\""}},
		{"digest-only twice", "[[registry]]\nprefix = \"a.example\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m.example\"\npull-from-mirror = \"all\"\n", []string{"line 6: pull-from-mirror cannot be given"}},
		{"duplicate prefix", "[[registry]]\nprefix = \"docker.io\"\n[[registry]]\nlocation = \"index.docker.io\"\n", []string{"line 3: prefix \"docker.io\" is also the prefix of the entry on line 1"}},
		{"short-name-mode", "short-name-mode = \"strict\"\n", []string{"line 1: short-name-mode \"strict\""}},
		{"search registry", "unqualified-search-registries = [\"docker.io/library\"]\n", []string{"line 1:", "not HOST[:PORT]"}},
		{"registry not tables", "registry = \"a.example\"\n", []string{"line 1: registry must be [[registry]] tables"}},
		{"aliases not strings", "[aliases]\nx = 1\n", []string{"line 2: alias \"x\" must be a string"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("r.conf", []byte(tc.doc))
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%v does not wrap ErrInvalid", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestParseAllProblems: each problem of a document is reported, in the
// order of its lines.
func TestParseAllProblems(t *testing.T) {
	_, err := Parse("r.conf", []byte("[[registry]]\nprefix = \"A\"\ninsecure = 1\n[[registry]]\nprefix = \"b.example\"\nblock = true\n"))
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	i2, i3, i6 := strings.Index(msg, "line 2:"), strings.Index(msg, "line 3:"), strings.Index(msg, "line 6:")
	if i2 < 0 || i3 < 0 || i6 < 0 || !(i2 < i3 && i3 < i6) {
		t.Fatalf("error %q does not report lines 2, 3 and 6", msg)
	}
}

func TestParseManyProblems(t *testing.T) {
	doc := strings.Repeat("[[registry]]\nprefix = \"A\"\n", 50)
	_, err := Parse("r.conf", []byte(doc))
	if err == nil || !strings.Contains(err.Error(), "and 30 more problems") || strings.Count(err.Error(), "r.conf line") != maxProblems {
		t.Fatalf("50 problems: %v", err)
	}
	c, err := Parse("r.conf", []byte("[[registry]]\nprefix = \"*.example\"\nlocation = \"\"\ninsecure = true\n"))
	if err != nil || c.Registries[0].LocationSet || c.Registries[0].Location != "" {
		t.Fatalf("a wildcard entry with location = \"\": %+v, %v", c, err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	c, err := Load(dir)
	if err != nil || len(c.Registries) != 0 {
		t.Fatalf("Load without a file: %v, %v; want an empty configuration", c, err)
	}
	if eps, err := c.Resolve("registry.k8s.io/pause:3.9"); err != nil || len(eps) != 1 || eps[0].Ref != "registry.k8s.io/pause:3.9" {
		t.Fatalf("an empty configuration resolves to %v, %v", eps, err)
	}
	path := filepath.Join(dir, File)
	if err := os.WriteFile(path, []byte("[[registry]]\nprefix = \"registry.k8s.io\"\nlocation = \"127.0.0.1:5000\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, err = Load(dir); err != nil || c.Path != path || len(c.Registries) != 1 {
		t.Fatalf("Load: %+v, %v", c, err)
	}
	if err := os.Mkdir(path+".d", 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err != nil {
		t.Fatalf("an empty registries.conf.d is refused: %v", err)
	}
	if err := os.WriteFile(filepath.Join(path+".d", "10-mirror.conf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "drop-in") {
		t.Fatalf("a drop-in file: %v, want a refusal", err)
	}
	os.RemoveAll(path + ".d")
	if err := os.WriteFile(path, make([]byte, MaxFileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a file over the size limit: %v", err)
	}
}
