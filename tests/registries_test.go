package tests

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/signing/policy"
	"github.com/karman-project/karman/tests/testenv"
	"github.com/karman-project/karman/tests/testimage"
	"github.com/karman-project/karman/tests/testregistry"
)

// deadProxy sends whatever karman would fetch off loopback to a port where
// nothing listens: a test of registries.conf that reached a public
// registry would fail, never leave the machine. (Loopback registries are
// not proxied.)
var deadProxy = []string{"HTTP_PROXY=http://127.0.0.1:9", "HTTPS_PROXY=http://127.0.0.1:9", "http_proxy=http://127.0.0.1:9", "https_proxy=http://127.0.0.1:9", "NO_PROXY=", "no_proxy="}

// regEnv is a data directory whose configuration directory has a policy
// accepting every image (unless the test writes another) and the
// registries.conf the test writes.
type regEnv struct{ dir, etc string }

func newRegEnv(t *testing.T, conf string) *regEnv {
	t.Helper()
	e := &regEnv{dir: t.TempDir()}
	e.etc = filepath.Join(e.dir, "etc")
	if err := os.MkdirAll(e.etc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.etc, "registries.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *regEnv) karman(t *testing.T, args ...string) testenv.Result {
	t.Helper()
	acceptAnything(t, e.etc)
	return testenv.Run(t, deadProxy, append([]string{"--dir", e.dir, "--config-dir", e.etc}, noNet(args)...)...)
}

// TestRegistriesMirror: registry.k8s.io/pause:3.9 is fetched, and run,
// from a loopback registry that registries.conf names as its mirror; the
// image keeps the name it was asked by.
func TestRegistriesMirror(t *testing.T) {
	host := testregistry.Distribution(t)
	want := pushed(t, host+"/k8s/pause:3.9", testimage.Options{}, testimage.Busybox)
	e := newRegEnv(t, fmt.Sprintf(`unqualified-search-registries = ["docker.io"]

[[registry]]
prefix = "registry.k8s.io"

[[registry.mirror]]
location = "%s/k8s"
`, host))

	r := mustSucceed(t, e.karman(t, "fetch", "registry.k8s.io/pause:3.9"))
	if got := strings.TrimSpace(r.Stdout); got != want {
		t.Fatalf("fetch printed %q, want %s", got, want)
	}
	var imgs []image.Image
	r = mustSucceed(t, e.karman(t, "image", "list", "--format", "json"))
	if err := json.Unmarshal([]byte(r.Stdout), &imgs); err != nil || len(imgs) != 1 || len(imgs[0].Names) != 1 || imgs[0].Names[0] != "registry.k8s.io/pause:3.9" {
		t.Fatalf("image list: %v %s", err, r.Stdout)
	}

	// By digest, as kubelet pins images.
	mustSucceed(t, e.karman(t, "fetch", "registry.k8s.io/pause@"+want))

	t.Run("run", func(t *testing.T) {
		testenv.RequireRoot(t, "pods need namespaces and mounts")
		p := &podEnv{dir: t.TempDir()}
		acceptAnything(t, filepath.Join(p.dir, "etc"))
		if err := os.WriteFile(filepath.Join(p.dir, "etc", "registries.conf"), []byte(fmt.Sprintf("[[registry]]\nprefix = \"registry.k8s.io\"\n[[registry.mirror]]\nlocation = \"%s/k8s\"\n", host)), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.assertNoLeaks(t) })
		// The lean karman has karman-full fetch the image the pod needs.
		r := testenv.Run(t, deadProxy, "--dir", p.dir, "--config-dir", filepath.Join(p.dir, "etc"), "run", "--net=none", "registry.k8s.io/pause:3.9", "--exec", "/bin/sh", "--", "-c", "echo ran")
		if r.Code != 0 || !strings.Contains(r.Stdout, "ran") {
			t.Fatalf("run of an image only a mirror has:\n%s", r)
		}
	})
}

// TestRegistriesMirrorFails: when every mirror fails the fetch fails,
// naming each mirror and why; the registry the reference names is not
// asked, even when it is up and has the image, unless the entry writes
// location = "...".
func TestRegistriesMirrorFails(t *testing.T) {
	host := testregistry.Distribution(t)
	ref := host + "/team/app:1"
	want := pushed(t, ref, testimage.Options{}, testimage.Busybox)
	dead := deadHost(t)
	empty := testregistry.Distribution(t)
	conf := fmt.Sprintf(`[[registry]]
prefix = "%s/team"

[[registry.mirror]]
location = "%s/team"

[[registry.mirror]]
location = "%s/team"
`, host, dead, empty)

	e := newRegEnv(t, conf)
	r := e.karman(t, "fetch", ref)
	assertRefused(t, r, e.dir,
		"mirror "+dead+"/team/app:1 ("+filepath.Join(e.etc, "registries.conf")+" line 4)", "cannot reach registry "+dead,
		"mirror "+empty+"/team/app:1 ("+filepath.Join(e.etc, "registries.conf")+" line 7)", "not found",
		"names no location to try after them")
	if strings.Contains(strings.ReplaceAll(r.Stderr, ref, ""), host+"/") {
		t.Errorf("the refusal names the primary registry as tried: %s", r.Stderr)
	}
	assertNothingStored(t, e.dir)

	// The location written: tried after the mirrors, and it serves.
	e = newRegEnv(t, strings.Replace(conf, "\n\n", fmt.Sprintf("\nlocation = \"%s/team\"\n\n", host), 1))
	r = mustSucceed(t, e.karman(t, "fetch", ref))
	if got := strings.TrimSpace(r.Stdout); got != want {
		t.Fatalf("fetch printed %q, want %s", got, want)
	}
	if !strings.Contains(r.Stderr, "pulling from the next place registries.conf names") {
		t.Errorf("the fall-back to the location written was silent: %q", r.Stderr)
	}
}

// TestRegistriesBlocked: a blocked prefix refuses the image with one line
// naming registries.conf and the entry's line; nothing is fetched, by
// fetch, verify or run.
func TestRegistriesBlocked(t *testing.T) {
	host := testregistry.Distribution(t)
	ref := host + "/forbidden/app:1"
	pushed(t, ref, testimage.Options{}, testimage.Busybox)
	e := newRegEnv(t, fmt.Sprintf("[[registry]]\nprefix = \"%s/ok\"\n\n[[registry]]\nprefix = \"%s/forbidden\"\nblocked = true\n", host, host))
	conf := filepath.Join(e.etc, "registries.conf")
	for _, args := range [][]string{{"fetch", ref}, {"verify", ref}, {"run", ref, "--exec", "/bin/true"}} {
		r := e.karman(t, args...)
		assertRefused(t, r, e.dir, "image "+ref+" refused: "+conf+" line 4 blocks prefix", "remove the entry")
	}
	assertNothingStored(t, e.dir)
}

// TestRegistriesInsecure: a location whose TLS certificate nothing
// vouches for is refused, unless its entry says insecure = true.
func TestRegistriesInsecure(t *testing.T) {
	tlsHost, plainHost := testregistry.InProcessTLS(t)
	want := pushed(t, plainHost+"/app:1", testimage.Options{}, testimage.Busybox)
	conf := fmt.Sprintf("[[registry]]\nprefix = \"registry.example\"\nlocation = %q\n", tlsHost)

	e := newRegEnv(t, conf)
	r := e.karman(t, "fetch", "registry.example/app:1")
	assertRefused(t, r, e.dir, tlsHost, "certificate")
	assertNothingStored(t, e.dir)

	e = newRegEnv(t, conf+"insecure = true\n")
	r = mustSucceed(t, e.karman(t, "fetch", "registry.example/app:1"))
	if got := strings.TrimSpace(r.Stdout); got != want {
		t.Fatalf("fetch printed %q, want %s", got, want)
	}
}

// TestRegistriesSignaturePolicy: the signature policy judges the name the
// image was asked by, not the mirror's: a key trusted for
// registry.k8s.io/pause admits it through the mirror, and a policy that
// trusts only the mirror's name refuses it.
func TestRegistriesSignaturePolicy(t *testing.T) {
	host := testregistry.Distribution(t)
	mirrorRef := host + "/k8s/pause:3.9"
	_, d := pushImage(t, mirrorRef, false)
	k := newTestKey(t)
	signSimple(t, mirrorRef, d, k) // the signature is copied with the image
	conf := fmt.Sprintf("[[registry]]\nprefix = \"registry.k8s.io\"\n[[registry.mirror]]\nlocation = \"%s/k8s\"\n", host)

	trusting := func(t *testing.T, scope string) *regEnv {
		e := newRegEnv(t, conf)
		mustSucceed(t, testenv.Run(t, deadProxy, "--config-dir", e.etc, "trust", "add", "--scope", scope, k.pub))
		return e
	}

	e := trusting(t, "registry.k8s.io/pause")
	r := mustSucceed(t, e.karman(t, "verify", "--format", "json", "registry.k8s.io/pause:3.9"))
	var dec policy.Decision
	if err := json.Unmarshal([]byte(r.Stdout), &dec); err != nil {
		t.Fatal(err)
	}
	if !dec.Accepted || dec.Scope != "registry.k8s.io/pause" || dec.PolicyScope != "registry.k8s.io/pause" || dec.Image != "registry.k8s.io/pause:3.9" {
		t.Errorf("verify through the mirror: %+v", dec)
	}
	r = mustSucceed(t, e.karman(t, "fetch", "registry.k8s.io/pause:3.9"))
	if got := strings.TrimSpace(r.Stdout); got != d.String() {
		t.Fatalf("fetch printed %q, want %s", got, d)
	}

	e = trusting(t, host+"/k8s")
	r = e.karman(t, "fetch", "registry.k8s.io/pause:3.9")
	assertRefused(t, r, e.dir, "image registry.k8s.io/pause:3.9", "refused", "the default")
	assertNothingStored(t, e.dir)
}

// TestRegistriesConfInvalid: a registries.conf that does not load stops
// every fetch with one line naming the file, the line and the key.
func TestRegistriesConfInvalid(t *testing.T) {
	e := newRegEnv(t, "[[registry]]\nprefix = \"registry.k8s.io\"\nlocaton = \"127.0.0.1:5000\"\n")
	r := e.karman(t, "fetch", "registry.k8s.io/pause:3.9")
	assertRefused(t, r, e.dir, filepath.Join(e.etc, "registries.conf")+" line 3: unknown key [[registry]] \"locaton\"")
}

// deadHost is a loopback address where nothing listens.
func deadHost(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestRegistriesCRIPullImage: the CRI's PullImage pulls from the mirror
// registries.conf names, judged and named by the reference the kubelet
// gave; a blocked prefix and a failing mirror fail it with their one line;
// the file is read again for each pull, with no restart of the agent.
func TestRegistriesCRIPullImage(t *testing.T) {
	host := testregistry.Distribution(t)
	mirrorRef := host + "/k8s/pause:3.9"
	_, d := pushImage(t, mirrorRef, false)
	k := newTestKey(t)
	signSimple(t, mirrorRef, d, k)
	pushImage(t, host+"/later/app:1", false)

	e := &criEnv{agentEnv: newAgentEnv(t)}
	e.sock = filepath.Join(e.dir, "run", "cri.sock")
	e.env = deadProxy
	conn, err := grpc.NewClient("unix://"+e.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e.rs, e.is = runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)

	etc := filepath.Join(e.dir, "etc")
	os.Remove(filepath.Join(etc, "policy.json")) // only the key for the public name
	mustSucceed(t, testenv.Run(t, deadProxy, "--config-dir", etc, "trust", "add", "--scope", "registry.k8s.io/pause", k.pub))
	conf := filepath.Join(etc, "registries.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`[[registry]]
prefix = "registry.k8s.io"
[[registry.mirror]]
location = "%s/k8s"

[[registry]]
prefix = "registry.k8s.io/blocked"
blocked = true

[[registry]]
prefix = "gcr.io"
[[registry.mirror]]
location = %q
`, host, deadHost(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	e.startCRI(t)
	ctx := ctxT(t, 2*time.Minute)

	r, err := e.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "registry.k8s.io/pause:3.9"}})
	if err != nil || r.ImageRef != d.String() {
		t.Fatalf("PullImage through the mirror: %v, %v; want %s", r, err, d)
	}
	st, err := e.is.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "registry.k8s.io/pause:3.9"}})
	if err != nil || st.Image == nil || len(st.Image.RepoTags) != 1 || st.Image.RepoTags[0] != "registry.k8s.io/pause:3.9" {
		t.Errorf("ImageStatus: %v, %v; want the repo tag registry.k8s.io/pause:3.9", st, err)
	}
	for _, tc := range []struct{ ref, want string }{
		{"registry.k8s.io/blocked/app:1", conf + " line 6 blocks prefix"},
		{"gcr.io/team/app:1", "names no location to try after them"},
	} {
		_, err := e.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: tc.ref}})
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("PullImage %s: %v; want one line saying %q", tc.ref, err, tc.want)
		}
	}

	// A new entry applies to the next pull.
	later := "later.example/app:1"
	if _, err := e.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: later}}); err == nil {
		t.Fatalf("PullImage %s with no entry for it succeeded", later)
	}
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "\n[[registry]]\nprefix = \"later.example\"\nlocation = \"%s/later\"\n", host)
	f.Close()
	mustSucceed(t, testenv.Run(t, deadProxy, "--config-dir", etc, "trust", "add", "--scope", "later.example", "--type", "insecure-accept-anything"))
	if _, err := e.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: later}}); err != nil {
		t.Fatalf("PullImage %s after its entry was added: %v", later, err)
	}
}
