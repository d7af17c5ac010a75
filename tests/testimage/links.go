package testimage

import (
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// WithLinks returns img with one more (gzip) layer holding the
// directories dirs (mode 0755, each with its parents) and the symlinks
// links (path in the image -> link target, written as given: absolute,
// relative or leading out with ".."). Paths are absolute or relative to
// the image's root.
func WithLinks(img v1.Image, dirs []string, links map[string]string) (v1.Image, error) {
	b := newTarBuilder(4 << 10)
	seen := map[string]bool{}
	for _, d := range dirs {
		var p string
		for _, c := range strings.Split(strings.Trim(d, "/"), "/") {
			p = strings.TrimPrefix(p+"/"+c, "/")
			if !seen[p] {
				seen[p] = true
				b.dir(p, 0o755)
			}
		}
	}
	names := make([]string, 0, len(links))
	for n := range links {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b.symlink(strings.TrimPrefix(n, "/"), links[n])
	}
	return b.appendTo(img, "karman testimage: links")
}
