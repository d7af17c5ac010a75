package pull

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/karman-project/karman/image/registries"
	"github.com/karman-project/karman/image/store"
	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/tests/testimage"
	"github.com/karman-project/karman/tests/testregistry"
)

// TestLocal: Local fetches an image into the store only past the trust
// policy: refused without a policy, fetched (with a warning) when
// verification is skipped, its digest the layout's.
func TestLocal(t *testing.T) {
	testimage.Require(t)
	layout := filepath.Join(t.TempDir(), "layout")
	want, err := testimage.WriteLayout(layout, "latest", testimage.Must(t)(testimage.Busybox(testimage.Options{})))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(t.TempDir(), "images"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var warnings []string
	l := Local{Store: st, ConfigDir: t.TempDir(), Warn: func(m string) { warnings = append(warnings, m) }}
	ref := "oci:" + layout + ":latest"
	if _, err := l.Fetch(context.Background(), ref, stage0.FetchOptions{}); err == nil || !strings.Contains(err.Error(), "no signature policy") {
		t.Fatalf("fetch without a policy: %v, want a refusal naming the missing policy", err)
	}
	if _, err := st.Resolve(ref); err == nil {
		t.Fatal("a refused image is in the store")
	}
	got, err := l.Fetch(context.Background(), ref, stage0.FetchOptions{InsecureImage: true})
	if err != nil {
		t.Fatal(err)
	}
	if got != want || len(warnings) != 1 || !strings.Contains(warnings[0], "signature verification skipped") {
		t.Errorf("fetched %s (want %s), warnings %q", got, want, warnings)
	}
	if d, err := st.Resolve(ref); err != nil || d != want {
		t.Errorf("stored as %s, %v; want %s", d, err, want)
	}
	if _, err := l.Fetch(context.Background(), "not a reference::", stage0.FetchOptions{}); err == nil {
		t.Error("a malformed reference was fetched")
	}
}

// TestLocalRegistriesConf: Local (the agent's and the CRI's fetcher, and
// the complete karman's for run) pulls from where ConfigDir's
// registries.conf says, read again for each fetch, and names the image as
// it was asked.
func TestLocalRegistriesConf(t *testing.T) {
	testimage.Require(t)
	host := testregistry.InProcess(t)
	want, err := testregistry.Push(context.Background(), host+"/mirror/pause:3.9", testimage.Must(t)(testimage.Busybox(testimage.Options{})))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(t.TempDir(), "images"), nil)
	if err != nil {
		t.Fatal(err)
	}
	etc := t.TempDir()
	l := Local{Store: st, ConfigDir: etc}
	conf := filepath.Join(etc, "registries.conf")
	if err := os.WriteFile(conf, []byte("[[registry]]\nprefix = \"registry.k8s.io\"\nblocked = true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Fetch(context.Background(), "registry.k8s.io/pause:3.9", stage0.FetchOptions{InsecureImage: true}); !errors.Is(err, registries.ErrBlocked) {
		t.Fatalf("blocked: %v", err)
	}
	if err := os.WriteFile(conf, []byte("[[registry]]\nprefix = \"registry.k8s.io\"\n[[registry.mirror]]\nlocation = \""+host+"/mirror\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := l.Fetch(context.Background(), "registry.k8s.io/pause:3.9", stage0.FetchOptions{InsecureImage: true})
	if err != nil || got != want {
		t.Fatalf("through the mirror: %s, %v; want %s", got, err, want)
	}
	if d, err := st.Resolve("registry.k8s.io/pause:3.9"); err != nil || d != want {
		t.Errorf("stored as %s, %v; want %s under the name asked for", d, err, want)
	}
}
