package testregistry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/karman-project/karman/tests/testenv"
)

// DistributionBinary is Debian's build of the CNCF distribution registry.
const DistributionBinary = "/usr/bin/docker-registry"

// ErrNoDistribution is returned (wrapped) by StartDistribution when
// DistributionBinary is missing; Distribution calls testenv.Missing instead.
var ErrNoDistribution = errors.New("needs Debian's docker-registry (apt-get install docker-registry)")

// InProcess starts go-containerregistry's in-memory registry (pkg/registry)
// in an httptest server on 127.0.0.1 and returns its "127.0.0.1:PORT". The
// server is closed by t.Cleanup.
func InProcess(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testregistry: listen on loopback: %v", err)
	}
	srv := httptest.NewUnstartedServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return l.Addr().String()
}

// InProcessTLS starts go-containerregistry's in-memory registry on two
// 127.0.0.1 ports: tlsHost serves it over TLS with a certificate that
// nothing trusts (httptest's), plainHost over plain HTTP, to push to with
// Push. Both are closed by t.Cleanup.
func InProcessTLS(t testing.TB) (tlsHost, plainHost string) {
	t.Helper()
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	tlsSrv := httptest.NewUnstartedServer(h)
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	plain := httptest.NewServer(h)
	t.Cleanup(plain.Close)
	return strings.TrimPrefix(tlsSrv.URL, "https://"), strings.TrimPrefix(plain.URL, "http://")
}

// Distribution starts Debian's docker-registry on a free 127.0.0.1 port with
// filesystem storage in a t.TempDir() and returns its "127.0.0.1:PORT". The
// registry is stopped (SIGTERM, SIGKILL after 5s) by t.Cleanup; its log is
// shown if the test failed. A missing binary stops the test (testenv.Missing).
func Distribution(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(DistributionBinary); err != nil {
		testenv.Missing(t, "Debian's docker-registry ("+DistributionBinary+")", "apt-get install docker-registry")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := startDistribution(ctx, t.TempDir())
	if err != nil {
		t.Fatalf("testregistry: %v", err)
	}
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("testregistry: stopping docker-registry: %v", err)
		}
		if t.Failed() {
			t.Logf("docker-registry on %s logged:\n%s", r.host, r.log.String())
		}
	})
	return r.host
}

// StartDistribution starts Debian's docker-registry like Distribution, for
// programs without a testing.TB: storage lives in dataDir (created if
// missing, kept afterwards, so it can be reused), the registry's log is
// appended to dataDir/docker-registry.log. ctx bounds only the
// startup. stop terminates the registry (SIGTERM, SIGKILL after 5s), waits
// for it and removes its generated configuration; it is safe to call more
// than once.
func StartDistribution(ctx context.Context, dataDir string) (host string, stop func() error, err error) {
	r, err := startDistribution(ctx, dataDir)
	if err != nil {
		return "", nil, err
	}
	// Keep the registry's log next to its storage for post-mortems.
	if f, err := os.OpenFile(filepath.Join(dataDir, "docker-registry.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err == nil {
		r.log.setFile(f)
	}
	return r.host, r.stop, nil
}

type distribution struct {
	host     string
	cmd      *exec.Cmd
	log      *logBuffer
	done     chan struct{} // closed when cmd has been waited for
	waitErr  error
	stopOnce sync.Once
	stopErr  error
	confDir  string
}

// configTemplate is the generated config.yml. Compared with Debian's
// /etc/docker/registry/config.yml (which listens on :5000, all interfaces,
// and wants htpasswd auth) it binds to loopback, has no auth, no debug or
// health endpoints, no redirects and no upload purging.
const configTemplate = `version: 0.1
log:
  level: warn
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
  redirect:
    disable: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:%d
  headers:
    X-Content-Type-Options: [nosniff]
`

func startDistribution(ctx context.Context, dataDir string) (*distribution, error) {
	if _, err := os.Stat(DistributionBinary); err != nil {
		return nil, fmt.Errorf("%w (%s: %v)", ErrNoDistribution, DistributionBinary, err)
	}
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	// Picking a free port and handing it to the registry races with other
	// processes; retry a few times if the port was taken meanwhile.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r, err := startDistributionOnce(ctx, dataDir)
		if err == nil {
			return r, nil
		}
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, lastErr
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startDistributionOnce(ctx context.Context, dataDir string) (*distribution, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("finding a free loopback port: %w", err)
	}
	confDir, err := os.MkdirTemp("", "karman-registry-conf-")
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(confDir, "config.yml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, configTemplate, dataDir, port), 0o644); err != nil {
		os.RemoveAll(confDir)
		return nil, err
	}

	r := &distribution{
		host:    "127.0.0.1:" + strconv.Itoa(port),
		log:     &logBuffer{},
		done:    make(chan struct{}),
		confDir: confDir,
	}
	r.cmd = exec.Command(DistributionBinary, "serve", conf)
	r.cmd.Env = registryEnv()
	r.cmd.Dir = dataDir
	r.cmd.Stdout = r.log
	r.cmd.Stderr = r.log
	// Die with us if we are killed before stop runs.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// Pdeathsig fires when the OS thread that forked the child exits, and Go
	// may retire threads (any goroutine that exits while locked to its thread
	// takes the thread with it, which namespace code in this repository
	// does). So fork from a goroutine locked to its own thread that lives
	// until the registry has exited.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		if err := r.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		r.waitErr = r.cmd.Wait()
		close(r.done)
	}()
	if err := <-started; err != nil {
		os.RemoveAll(confDir)
		return nil, fmt.Errorf("starting %s: %w", DistributionBinary, err)
	}

	if err := r.waitReady(ctx); err != nil {
		r.stop()
		return nil, fmt.Errorf("docker-registry on %s: %w\nlog:\n%s", r.host, err, r.log.String())
	}
	return r, nil
}

// registryEnv is our environment without REGISTRY_* variables, which
// distribution would treat as configuration overrides (for example
// REGISTRY_HTTP_ADDR could make it listen on other interfaces).
func registryEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "REGISTRY_") {
			env = append(env, e)
		}
	}
	return env
}

func (r *distribution) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + r.host + "/v2/"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		select {
		case <-r.done:
			return fmt.Errorf("exited before answering: %v", r.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("not answering GET /v2/: %v (%w)", err, ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func (r *distribution) stop() error {
	r.stopOnce.Do(func() {
		defer os.RemoveAll(r.confDir)
		select {
		case <-r.done:
			r.stopErr = fmt.Errorf("docker-registry had already exited: %v", r.waitErr)
			return
		default:
		}
		if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			r.stopErr = err
		}
		select {
		case <-r.done:
			return
		case <-time.After(5 * time.Second):
		}
		if err := r.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			r.stopErr = err
		}
		<-r.done
	})
	r.log.close()
	return r.stopErr
}

// logBuffer collects the registry's output, keeping the last 64 KiB, and
// copies it to a file if one is set.
type logBuffer struct {
	mu   sync.Mutex
	buf  []byte
	file *os.File
}

const logLimit = 64 << 10

func (b *logBuffer) setFile(f *os.File) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.file = f
	f.Write(b.buf)
}

func (b *logBuffer) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.file != nil {
		b.file.Close()
		b.file = nil
	}
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.file != nil {
		b.file.Write(p)
	}
	b.buf = append(b.buf, p...)
	if len(b.buf) > logLimit {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-logLimit:]...)
	}
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// IsLoopback reports whether a registry host ("HOST" or "HOST:PORT") is
// localhost or a loopback IP address.
func IsLoopback(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// parseLoopbackRef parses ref and refuses registries off the loopback
// interface, so tests and tools never push to the network.
func parseLoopbackRef(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return nil, fmt.Errorf("testregistry: reference %q: %w", ref, err)
	}
	if !IsLoopback(r.Context().RegistryStr()) {
		return nil, fmt.Errorf("testregistry: refusing to push to %q: registry %q is not on a loopback address (127.0.0.1, ::1, localhost)", ref, r.Context().RegistryStr())
	}
	return r, nil
}

// Push writes img to ref ("127.0.0.1:PORT/repo:tag") over plain HTTP and
// returns the manifest digest. Only loopback registries are accepted.
func Push(ctx context.Context, ref string, img v1.Image) (v1.Hash, error) {
	r, err := parseLoopbackRef(ref)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		return v1.Hash{}, fmt.Errorf("testregistry: pushing %s: %w", ref, err)
	}
	return img.Digest()
}

// PushIndex is Push for an image index (see testimage.Index).
func PushIndex(ctx context.Context, ref string, idx v1.ImageIndex) (v1.Hash, error) {
	r, err := parseLoopbackRef(ref)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := remote.WriteIndex(r, idx, remote.WithContext(ctx)); err != nil {
		return v1.Hash{}, fmt.Errorf("testregistry: pushing %s: %w", ref, err)
	}
	return idx.Digest()
}
