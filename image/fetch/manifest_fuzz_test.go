package fetch

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/image/store"
)

const fuzzDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// FuzzManifest feeds manifests and indexes, with the media type a source
// claims for them, through classify, pickPlatform and parseManifest, as a
// fetch does. It checks that refusals wrap ErrUnsupported or ErrNotFound,
// that what is accepted holds only safe digests (they become file names)
// and sizes and counts within the limits, that an index yields a manifest
// for the asked platform, and that an accepted manifest, encoded again,
// is accepted as the same manifest.
func FuzzManifest(f *testing.F) {
	cfg := `{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + fuzzDigest + `","size":12}`
	lay := `{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"` + fuzzDigest + `","size":34}`
	for _, s := range []struct{ doc, mt string }{
		{`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":` + cfg + `,"layers":[` + lay + `]}`, ""},
		{`{"schemaVersion":2,"config":` + cfg + `,"layers":[` + lay + `,` + lay + `]}`, "application/vnd.oci.image.manifest.v1+json"},
		{`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"` + fuzzDigest + `","size":1},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"` + fuzzDigest + `","size":1}]}`, "application/vnd.docker.distribution.manifest.v2+json"},
		{`{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:../../etc","size":1},"layers":[]}`, ""},
		{`{"schemaVersion":2,"config":` + cfg + `,"layers":[{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"` + fuzzDigest + `","size":-1,"urls":["http://x"]}]}`, ""},
		{`{"schemaVersion":1,"name":"a","tag":"b","fsLayers":[]}`, ""},
		{`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + fuzzDigest + `","size":5,"platform":{"architecture":"amd64","os":"linux"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha512:00","size":5,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}}]}`, ""},
		{`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"` + fuzzDigest + `","size":5,"platform":{"architecture":"amd64","os":"linux"}}]}`, "application/vnd.docker.distribution.manifest.list.v2+json"},
		{`{"mediaType":"application/vnd.oci.image.index.v1+json"}`, "application/vnd.oci.image.manifest.v1+json"},
		{`[]`, ""},
		{`{"layers":null}`, "text/plain"},
	} {
		f.Add([]byte(s.doc), s.mt)
	}
	platform := v1.Platform{OS: "linux", Architecture: "amd64"}
	f.Fuzz(func(t *testing.T, raw []byte, claimed string) {
		mt, err := classify(raw, types.MediaType(claimed))
		if err != nil {
			if !errors.Is(err, image.ErrUnsupported) {
				t.Fatalf("classify: %v does not wrap ErrUnsupported", err)
			}
			return
		}
		if claimed != "" && mt != types.MediaType(claimed) {
			t.Fatalf("classify(%q) = %q: not the media type the source claimed", claimed, mt)
		}
		if isIndex(mt) {
			d, err := pickPlatform(raw, platform)
			if err != nil {
				if !errors.Is(err, image.ErrUnsupported) && !errors.Is(err, image.ErrNotFound) {
					t.Fatalf("pickPlatform: %v wraps neither ErrUnsupported nor ErrNotFound", err)
				}
				return
			}
			if _, err := store.ParseDigest(d.Digest.String()); err != nil {
				t.Fatalf("pickPlatform chose a manifest with digest %q: %v", d.Digest, err)
			}
			if d.Platform == nil || !d.Platform.Satisfies(platform) || isIndex(d.MediaType) {
				t.Fatalf("pickPlatform chose %+v for %s", d, platform)
			}
			return
		}
		m, err := parseManifest(raw, mt)
		if err != nil {
			if !errors.Is(err, image.ErrUnsupported) {
				t.Fatalf("parseManifest: %v does not wrap ErrUnsupported", err)
			}
			return
		}
		checkManifest(t, m)
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := parseManifest(again, mt)
		if err != nil {
			t.Fatalf("an accepted manifest, encoded again, is refused: %v\n%s", err, again)
		}
		if diff := cmp.Diff(m, m2, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("an accepted manifest, encoded again, reads differently (-first +again):\n%s", diff)
		}
	})
}

// checkManifest asserts what parseManifest promises of what it accepts.
func checkManifest(t *testing.T, m *v1.Manifest) {
	t.Helper()
	if m.SchemaVersion != 2 {
		t.Fatalf("accepted schemaVersion %d", m.SchemaVersion)
	}
	if m.Config.Size <= 0 || m.Config.Size > store.MaxConfigSize {
		t.Fatalf("accepted config size %d", m.Config.Size)
	}
	if len(m.Layers) > maxLayers {
		t.Fatalf("accepted %d layers", len(m.Layers))
	}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		h := d.Digest.String()
		if _, err := store.ParseDigest(h); err != nil || strings.ContainsAny(h, "/\\.\x00") {
			t.Fatalf("accepted digest %q, which is not safe as a file name", h)
		}
		if d.Size < 0 {
			t.Fatalf("accepted size %d", d.Size)
		}
	}
	for _, l := range m.Layers {
		if !layerTypes[l.MediaType] {
			t.Fatalf("accepted layer media type %q", l.MediaType)
		}
	}
	if bytes.Contains([]byte(m.Config.MediaType), []byte("\x00")) {
		t.Fatalf("accepted config media type %q", m.Config.MediaType)
	}
}
