package pull

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/karman-project/karman/image/store"
	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/tests/testimage"
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
