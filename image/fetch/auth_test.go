package fetch_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/image/fetch"
	"github.com/karman-project/karman/tests/testimage"
)

// TestFetchWithDockerConfigCredentials: a registry that wants basic auth
// is reached with the credentials of the Docker config keychain, and
// refused without them.
func TestFetchWithDockerConfigCredentials(t *testing.T) {
	img := testimage.Must(t)(testimage.Busybox(testimage.Options{}))
	reg := newFakeRegistry(t)
	ref := reg.host + "/private/busybox:v1"
	want := push(t, ref, img)
	reg.middleware = func(w http.ResponseWriter, r *http.Request) bool {
		if u, p, ok := r.BasicAuth(); ok && u == "karman" && p == "s3cret" {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	}

	cfg := t.TempDir()
	t.Setenv("DOCKER_CONFIG", cfg)
	if _, err := fetch.Fetch(context.Background(), mustRef(t, ref), fetch.Options{Store: openStore(t)}); !errors.Is(err, image.ErrUnauthorized) {
		t.Fatalf("without credentials: got %v, want ErrUnauthorized", err)
	}
	auth := base64.StdEncoding.EncodeToString([]byte("karman:s3cret"))
	conf := `{"auths":{"` + reg.host + `":{"auth":"` + auth + `"}}}`
	if err := os.WriteFile(filepath.Join(cfg, "config.json"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := fetch.Fetch(context.Background(), mustRef(t, ref), fetch.Options{Store: openStore(t)})
	if err != nil {
		t.Fatalf("with credentials: %v", err)
	}
	if got.Digest != want.String() {
		t.Errorf("digest %s, want %s", got.Digest, want)
	}
}
