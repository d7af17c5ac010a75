package registries

import (
	"fmt"
	"strings"
	"testing"
)

// benchConf is a registries.conf of the size a node has: the three
// registries critest pulls from remapped, a mirrored Docker Hub, a few
// blocked and wildcard entries.
func benchConf() []byte {
	var b strings.Builder
	b.WriteString("unqualified-search-registries = [\"docker.io\"]\nshort-name-mode = \"enforcing\"\n")
	for _, p := range []string{"registry.k8s.io", "k8s.gcr.io", "gcr.io"} {
		fmt.Fprintf(&b, "\n[[registry]]\nprefix = %q\nlocation = \"127.0.0.1:5000\"\ninsecure = true\n", p)
	}
	b.WriteString("\n[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n[[registry.mirror]]\nlocation = \"mirror.example/hub\"\n[[registry.mirror]]\nlocation = \"backup.example:5000/hub\"\npull-from-mirror = \"digest-only\"\n")
	for i := range 10 {
		fmt.Fprintf(&b, "\n[[registry]]\nprefix = \"*.blocked%d.example\"\nblocked = true\n", i)
	}
	return []byte(b.String())
}

// BenchmarkParse: what each fetch spends reading the file.
func BenchmarkParse(b *testing.B) {
	doc := benchConf()
	for b.Loop() {
		if _, err := Parse("registries.conf", doc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkResolve: what each fetch spends finding where to pull from.
func BenchmarkResolve(b *testing.B) {
	c, err := Parse("registries.conf", benchConf())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := c.Resolve("registry.k8s.io/e2e-test-images/busybox:1.29-2"); err != nil {
			b.Fatal(err)
		}
	}
}
