package fetch_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/image/fetch"
	"github.com/karman-project/karman/image/registries"
	"github.com/karman-project/karman/signing"
	"github.com/karman-project/karman/signing/cosign"
	"github.com/karman-project/karman/tests/testimage"
)

// loopbackOnly is a base transport that refuses, and records, every
// connection to a host that is not on loopback: where registries.conf
// sends no request, none may leave.
type loopbackOnly struct {
	mu      sync.Mutex
	refused []string
	inner   *http.Transport
}

func newLoopbackOnly() *loopbackOnly {
	l := &loopbackOnly{}
	l.inner = http.DefaultTransport.(*http.Transport).Clone()
	l.inner.Proxy = nil
	return l
}

func (l *loopbackOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if ip := net.ParseIP(r.URL.Hostname()); ip == nil || !ip.IsLoopback() {
		l.mu.Lock()
		l.refused = append(l.refused, r.URL.Host)
		l.mu.Unlock()
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("the test refuses hosts off loopback")}
	}
	return l.inner.RoundTrip(r)
}

func (l *loopbackOnly) offLoopback() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.refused...)
}

func regsConf(t *testing.T, doc string) *registries.Config {
	t.Helper()
	c, err := registries.Parse("registries.conf", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFetchThroughMirrors: an image under a public name is fetched from
// the mirrors registries.conf names, in order, keeping its name and trust
// scope; when every mirror fails the fetch fails, naming each, and the
// primary registry is not asked unless the entry writes its location.
func TestFetchThroughMirrors(t *testing.T) {
	ctx := context.Background()
	img := testimage.Must(t)(testimage.Busybox(testimage.Options{}))
	empty := newFakeRegistry(t) // has nothing: answers 404
	good := newFakeRegistry(t)
	want := push(t, good.host+"/k8s/pause:3.9", img)
	priv, key := signingKey(t)
	repo, _ := name.NewRepository(good.host + "/k8s/pause")
	if err := cosign.PushSimple(ctx, repo, want, priv); err != nil {
		t.Fatal(err)
	}
	dead := deadHost(t)

	t.Run("second mirror serves", func(t *testing.T) {
		tr := newLoopbackOnly()
		conf := regsConf(t, fmt.Sprintf(`
[[registry]]
prefix = "registry.k8s.io"
[[registry.mirror]]
location = %q
[[registry.mirror]]
location = %q
[[registry.mirror]]
location = "%s/k8s"
`, dead, empty.host, good.host))
		st := openStore(t)
		var seen fetch.Target
		got, err := fetch.Fetch(ctx, mustRef(t, "registry.k8s.io/pause:3.9"), fetch.Options{
			Store: st, Registries: conf, Transport: tr,
			Verify: func(ctx context.Context, tg fetch.Target) error {
				seen = tg
				res, err := cosign.Verify(ctx, tg.Signatures, tg.Digest, []signing.Key{key})
				if err != nil {
					return err
				}
				if res.Verified == nil {
					return errors.New("no signature verified")
				}
				return nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if got.Digest != want.String() || len(got.Names) != 1 || got.Names[0] != "registry.k8s.io/pause:3.9" {
			t.Errorf("fetched %s named %v, want %s named registry.k8s.io/pause:3.9", got.Digest, got.Names, want)
		}
		if seen.Scope != "registry.k8s.io/pause" || seen.Ref.Name != "registry.k8s.io/pause:3.9" {
			t.Errorf("the verifier judged scope %q of %q, want the name asked for", seen.Scope, seen.Ref.Name)
		}
		if off := tr.offLoopback(); len(off) != 0 {
			t.Errorf("requests off loopback: %v", off)
		}
	})

	t.Run("every mirror fails", func(t *testing.T) {
		tr := newLoopbackOnly()
		conf := regsConf(t, fmt.Sprintf(`
[[registry]]
prefix = "registry.k8s.io"
[[registry.mirror]]
location = %q
[[registry.mirror]]
location = %q
`, dead, empty.host))
		st := openStore(t)
		_, err := fetch.Fetch(ctx, mustRef(t, "registry.k8s.io/pause:3.9"), fetch.Options{Store: st, Registries: conf, Transport: tr})
		if err == nil {
			t.Fatal("fetched with no mirror serving the image")
		}
		msg := err.Error()
		for _, w := range []string{"mirror " + dead + "/pause:3.9 (registries.conf line 4)", "mirror " + empty.host + "/pause:3.9 (registries.conf line 6)", "names no location", "cannot reach registry", "not found"} {
			if !strings.Contains(msg, w) {
				t.Errorf("error %q does not say %q", msg, w)
			}
		}
		if !errors.Is(err, image.ErrNotFound) || !errors.Is(err, image.ErrUnreachable) || strings.Contains(msg, "\n") {
			t.Errorf("error %q: want one line wrapping ErrNotFound and ErrUnreachable", msg)
		}
		if off := tr.offLoopback(); len(off) != 0 {
			t.Errorf("fell back to %v", off)
		}
		assertNothingCommitted(t, st)
	})

	t.Run("the location written is tried last", func(t *testing.T) {
		conf := regsConf(t, fmt.Sprintf(`
[[registry]]
prefix = "registry.k8s.io"
location = "%s/k8s"
[[registry.mirror]]
location = %q
`, good.host, empty.host))
		got, err := fetch.Fetch(ctx, mustRef(t, "registry.k8s.io/pause@"+want.String()), fetch.Options{Store: openStore(t), Registries: conf, Transport: newLoopbackOnly()})
		if err != nil || got.Digest != want.String() {
			t.Fatalf("fetch: %v, %v", got.Digest, err)
		}
	})

	t.Run("a location that fails", func(t *testing.T) {
		conf := regsConf(t, fmt.Sprintf("[[registry]]\nprefix = \"registry.k8s.io\"\nlocation = %q\n", empty.host))
		_, err := fetch.Fetch(ctx, mustRef(t, "registry.k8s.io/pause:3.9"), fetch.Options{Store: openStore(t), Registries: conf, Transport: newLoopbackOnly()})
		if want := "image registry.k8s.io/pause:3.9: location " + empty.host + "/pause:3.9 (registries.conf line 1): "; err == nil || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, image.ErrNotFound) {
			t.Fatalf("fetch from a location without the image: %v, want it to start with %q", err, want)
		}
		conf = regsConf(t, fmt.Sprintf("[[registry]]\nprefix = \"registry.k8s.io\"\nlocation = %q\n", dead))
		_, err = fetch.Fetch(ctx, mustRef(t, "registry.k8s.io/pause:3.9"), fetch.Options{Store: openStore(t), Registries: conf, Transport: newLoopbackOnly()})
		if want := "image registry.k8s.io/pause:3.9: location " + dead + "/pause:3.9 (registries.conf line 1): "; err == nil || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, image.ErrUnreachable) {
			t.Fatalf("fetch from a location that is down: %v, want it to start with %q", err, want)
		}
	})

	t.Run("blocked", func(t *testing.T) {
		tr := newLoopbackOnly()
		var asked sync.Once
		good.middleware = func(http.ResponseWriter, *http.Request) bool {
			asked.Do(func() { t.Error("the registry of a blocked prefix was asked") })
			return false
		}
		t.Cleanup(func() { good.middleware = nil })
		conf := regsConf(t, fmt.Sprintf("[[registry]]\nprefix = %q\nblocked = true\n", good.host+"/k8s"))
		err := fetch.Check(ctx, mustRef(t, good.host+"/k8s/pause:3.9"), fetch.Options{Registries: conf, Transport: tr, Verify: func(context.Context, fetch.Target) error { return nil }})
		if !errors.Is(err, registries.ErrBlocked) || !strings.Contains(err.Error(), "registries.conf line 1") {
			t.Fatalf("blocked: %v", err)
		}
	})
}

// TestFetchInsecureLocation: insecure = true allows a TLS certificate
// nothing vouches for and plain HTTP off loopback, for that location only.
func TestFetchInsecureLocation(t *testing.T) {
	ctx := context.Background()
	img := testimage.Must(t)(testimage.Busybox(testimage.Options{}))
	plain := newFakeRegistry(t)
	want := push(t, plain.host+"/app:1", img)
	tlsSrv := httptest.NewUnstartedServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	tlsHost := strings.TrimPrefix(tlsSrv.URL, "https://")
	tlsTr := tlsSrv.Client().Transport.(*http.Transport).Clone() // trusts the test certificate, to push
	if err := pushWith(ctx, tlsHost+"/app:1", img, tlsTr); err != nil {
		t.Fatal(err)
	}

	// registry.example is the plain registry on loopback, by name.
	byName := http.DefaultTransport.(*http.Transport).Clone()
	byName.Proxy = nil
	byName.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if !strings.HasPrefix(addr, "registry.example:") {
			return nil, fmt.Errorf("the test dials only registry.example, not %s", addr)
		}
		return (&net.Dialer{}).DialContext(ctx, network, plain.host)
	}

	for _, tc := range []struct {
		name, conf, ref string
		tr              http.RoundTripper
		refused         error
	}{
		{"unverified TLS", fmt.Sprintf("[[registry]]\nprefix = \"tls.example\"\nlocation = %q\n", tlsHost), "tls.example/app:1", nil, nil},
		{"plain HTTP", "[[registry]]\nprefix = \"registry.example\"\n", "registry.example/app:1", byName, nil},
		{"plain HTTP through a mirror", "[[registry]]\nprefix = \"public.example\"\n[[registry.mirror]]\nlocation = \"registry.example\"\n", "public.example/app:1", byName, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			secure := regsConf(t, tc.conf)
			err := fetch.Check(ctx, mustRef(t, tc.ref), fetch.Options{Registries: secure, Transport: tc.tr, Verify: func(context.Context, fetch.Target) error { return nil }})
			if err == nil || tc.refused != nil && !errors.Is(err, tc.refused) {
				t.Fatalf("without insecure: %v, want a refusal", err)
			}
			lines := strings.Split(tc.conf, "\n")
			lines[len(lines)-1] = "insecure = true"
			insecure := regsConf(t, strings.Join(lines, "\n"))
			got, err := fetch.Fetch(ctx, mustRef(t, tc.ref), fetch.Options{Store: openStore(t), Registries: insecure, Transport: tc.tr})
			if err != nil || got.Digest != want.String() {
				t.Fatalf("with insecure = true: %v, %v", got.Digest, err)
			}
		})
	}
}

// pushWith pushes img to ref (over TLS) through tr.
func pushWith(ctx context.Context, ref string, img v1.Image, tr http.RoundTripper) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return err
	}
	return remote.Write(r, img, remote.WithContext(ctx), remote.WithTransport(tr))
}

// deadHost is a loopback address where nothing listens.
func deadHost(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
