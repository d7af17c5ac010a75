package cri

import (
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/tests/testenv"
	"github.com/karman-project/karman/tests/testimage"
)

// TestPullImageAuth: PullImage fetches with the request's credentials
// from a registry that requires them, and fails without them.
func TestPullImageAuth(t *testing.T) {
	testenv.RequireRoot(t, "the runtime's store is root's")
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "kube" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	ref := l.Addr().String() + "/private/busybox:1"
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img := testimage.Must(t)(testimage.Busybox(testimage.Options{}))
	if err := remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: "kube", Password: "s3cret"})); err != nil {
		t.Fatal(err)
	}

	e := newCRIEnv(t, "")
	ctx := ctxT(t)
	if _, err := e.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err == nil {
		t.Errorf("PullImage without credentials succeeded")
	} else if strings.Contains(err.Error(), "\n") {
		t.Errorf("PullImage's error is not one line: %q", err)
	}
	got, err := e.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref},
		Auth: &runtimeapi.AuthConfig{Username: "kube", Password: "s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if got.ImageRef != want.String() {
		t.Errorf("PullImage = %s, want %s", got.ImageRef, want)
	}
}
