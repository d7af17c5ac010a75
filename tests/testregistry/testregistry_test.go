package testregistry_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/karman-project/karman/tests/testenv"
	"github.com/karman-project/karman/tests/testimage"
	"github.com/karman-project/karman/tests/testregistry"
)

func pull(t *testing.T, ctx context.Context, ref string) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, remote.WithContext(ctx))
	if err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	return img
}

// roundTrip pushes images in every compression and an index to host and
// pulls them back.
func roundTrip(t *testing.T, host string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, c := range []testimage.Compression{testimage.Gzip, testimage.Zstd, testimage.Uncompressed} {
		t.Run(c.String(), func(t *testing.T) {
			img := testimage.Must(t)(testimage.MultiLayer(testimage.Options{Compression: c}))
			ref := host + "/karman/multilayer:" + c.String()
			digest, err := testregistry.Push(ctx, ref, img)
			if err != nil {
				t.Fatal(err)
			}
			if want, _ := img.Digest(); digest != want {
				t.Errorf("Push returned %s, want %s", digest, want)
			}
			back := pull(t, ctx, ref)
			if got, _ := back.Digest(); got != digest {
				t.Errorf("pulled %s, pushed %s", got, digest)
			}
			want, _ := img.Manifest()
			got, err := back.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			for i := range want.Layers {
				if got.Layers[i].MediaType != want.Layers[i].MediaType || got.Layers[i].Digest != want.Layers[i].Digest {
					t.Errorf("layer %d: %+v, want %+v", i, got.Layers[i], want.Layers[i])
				}
			}
			if c == testimage.Gzip {
				if err := validate.Image(back); err != nil {
					t.Errorf("validate: %v", err)
				}
			} else if err := validate.Image(back, validate.Fast); err != nil {
				t.Errorf("validate: %v", err)
			}
			// Pull by digest, too.
			pull(t, ctx, host+"/karman/multilayer@"+digest.String())
		})
	}
	t.Run("index", func(t *testing.T) {
		amd := testimage.Must(t)(testimage.Busybox(testimage.Options{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}))
		arm := testimage.Must(t)(testimage.Busybox(testimage.Options{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}))
		idx, err := testimage.Index(amd, arm)
		if err != nil {
			t.Fatal(err)
		}
		ref := host + "/karman/multiarch:latest"
		digest, err := testregistry.PushIndex(ctx, ref, idx)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := name.ParseReference(ref, name.Insecure)
		back, err := remote.Index(r, remote.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := back.Digest(); got != digest {
			t.Errorf("pulled index %s, pushed %s", got, digest)
		}
		if err := validate.Index(back); err != nil {
			t.Errorf("validate: %v", err)
		}
		armImg, err := remote.Image(r, remote.WithContext(ctx), remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64"}))
		if err != nil {
			t.Fatal(err)
		}
		cf, err := armImg.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Architecture != "arm64" {
			t.Errorf("platform resolution picked %s", cf.Architecture)
		}
	})
}

func TestInProcess(t *testing.T) {
	host := testregistry.InProcess(t)
	if !strings.HasPrefix(host, "127.0.0.1:") {
		t.Fatalf("host %q", host)
	}
	roundTrip(t, host)
}

func TestDistribution(t *testing.T) {
	host := testregistry.Distribution(t)
	if !strings.HasPrefix(host, "127.0.0.1:") {
		t.Fatalf("host %q", host)
	}
	roundTrip(t, host)
}

func TestStartDistribution(t *testing.T) {
	testimage.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	host, stop, err := testregistry.StartDistribution(ctx, dir)
	if err != nil {
		if errors.Is(err, testregistry.ErrNoDistribution) {
			testenv.Missing(t, "Debian's docker-registry ("+testregistry.DistributionBinary+")", "apt-get install docker-registry")
		}
		t.Fatal(err)
	}
	img := testimage.Must(t)(testimage.Busybox(testimage.Options{}))
	digest, err := testregistry.Push(ctx, host+"/karman/busybox:latest", img)
	if err != nil {
		stop()
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if err := stop(); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if resp, err := http.Get("http://" + host + "/v2/"); err == nil {
		resp.Body.Close()
		t.Errorf("registry still answers on %s after stop", host)
	}

	// The data directory survives a restart.
	host, stop, err = testregistry.StartDistribution(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	back := pull(t, ctx, host+"/karman/busybox:latest")
	if got, _ := back.Digest(); got != digest {
		t.Errorf("after restart pulled %s, want %s", got, digest)
	}
}

func TestPushRefusesNonLoopback(t *testing.T) {
	img := testimage.Must(t)(testimage.Busybox(testimage.Options{}))
	for _, ref := range []string{"busybox:latest", "example.com/karman/busybox:latest", "10.0.0.1:5000/x:y", "0.0.0.0:5000/x:y"} {
		if _, err := testregistry.Push(context.Background(), ref, img); err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("Push(%q) = %v, want a loopback refusal", ref, err)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1:5000": true, "127.0.0.2": true, "localhost:80": true, "LOCALHOST": true,
		"[::1]:5000": true, "::1": true, "10.1.2.3:5000": false, "0.0.0.0:5000": false,
		"example.com": false, "index.docker.io": false, "localhost.example.com:5000": false,
	} {
		if got := testregistry.IsLoopback(host); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", host, got, want)
		}
	}
}
