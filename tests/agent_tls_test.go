package tests

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/karman-project/karman/agentapi"
	"github.com/karman-project/karman/tests/testenv"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue makes a leaf certificate for a server (with 127.0.0.1) or a client.
func (ca *testCA) issue(t *testing.T, name string, server bool) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func writePEM(t *testing.T, dir string, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	kb, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// tlsAgent starts an agent on a loopback TCP port with the given
// authentication flags and returns its address.
func tlsAgent(t *testing.T, e *agentEnv, ca *testCA, flags ...string) string {
	t.Helper()
	certFile, keyFile := writePEM(t, t.TempDir(), ca.issue(t, "agent", true))
	addr := fmt.Sprintf("tcp://127.0.0.1:%d", freeTCPPort(t))
	args := append([]string{"--dir", e.dir, "--config-dir", filepath.Join(e.dir, "etc"), "agent", "--cri-socket=",
		"--listen", addr, "--tls-cert", certFile, "--tls-key", keyFile}, flags...)
	e.startArgs(t, args, func(ctx context.Context) error {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(addr, "tcp://"), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	return addr
}

func clientFor(t *testing.T, addr string, ca *testCA, cert *tls.Certificate, token string) *agentapi.Client {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.pem)
	cfg := &tls.Config{RootCAs: pool}
	if cert != nil {
		// Always present it: Go's client would otherwise withhold a
		// certificate that the server's CA list does not name.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	c, err := agentapi.NewClient(addr, agentapi.ClientOptions{TLS: cfg, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAgentMutualTLS(t *testing.T) {
	e := newAgentEnv(t)
	ca, other := newTestCA(t, "karman test CA"), newTestCA(t, "someone else's CA")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, ca.pem, 0o644)
	tokenFile := filepath.Join(t.TempDir(), "token")
	token := "0123456789abcdef0123456789abcdef"
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)
	addr := tlsAgent(t, e, ca, "--client-ca", caFile, "--token-file", tokenFile)
	ctx := ctxT(t, 2*time.Minute)

	good := ca.issue(t, "master", false)
	mtls := clientFor(t, addr, ca, &good, "")
	// A whole task's life over mTLS.
	if _, err := mtls.Node(ctx); err != nil {
		t.Fatalf("with a client certificate of the CA: %v", err)
	}
	if _, err := mtls.Launch(ctx, "over-tls", e.spec("echo via-tls; exit 4")); err != nil {
		t.Fatal(err)
	}
	tk, err := mtls.Wait(ctx, "over-tls")
	if err != nil || tk.ExitCode == nil || *tk.ExitCode != 4 {
		t.Errorf("task over mTLS %+v, %v", tk, err)
	}
	var logs strings.Builder
	if err := mtls.Logs(ctx, "over-tls", false, &logs); err != nil || logs.String() != "via-tls\n" {
		t.Errorf("logs over mTLS %q, %v", logs.String(), err)
	}
	if err := mtls.Delete(ctx, "over-tls"); err != nil {
		t.Error(err)
	}
	// The bearer token alone is enough; nothing, or a wrong token, is 401
	// on every endpoint.
	if _, err := clientFor(t, addr, ca, nil, token).Node(ctx); err != nil {
		t.Errorf("with the token: %v", err)
	}
	// The scheme's name is case-insensitive (RFC 7235).
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.pem)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, scheme := range []string{"bearer", "BEARER", "bEaReR"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+strings.TrimPrefix(addr, "tcp://")+"/v1/node", nil)
		req.Header.Set("Authorization", scheme+" "+token)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("Authorization: %s TOKEN: %s, want 200", scheme, resp.Status)
		}
	}
	for _, c := range []*agentapi.Client{clientFor(t, addr, ca, nil, ""), clientFor(t, addr, ca, nil, "wrong-token-wrong-token")} {
		for _, path := range []string{"/v1/health", "/v1/node", "/v1/tasks", "/metrics", "/v1/events?follow=false", "/nowhere"} {
			if _, err := c.Do(ctx, http.MethodGet, path, nil); agentapi.StatusOf(err) != http.StatusUnauthorized {
				t.Errorf("GET %s without credentials: %v, want 401", path, err)
			}
		}
		if _, err := c.Launch(ctx, "sneaky", e.spec("true")); agentapi.StatusOf(err) != http.StatusUnauthorized {
			t.Errorf("PUT without credentials: %v, want 401", err)
		}
	}
	// A certificate from another CA is refused in the handshake.
	bad := other.issue(t, "intruder", false)
	if _, err := clientFor(t, addr, ca, &bad, token).Health(ctx); err == nil || !strings.Contains(err.Error(), "tls:") {
		t.Errorf("with a certificate of another CA: %v, want a refused handshake", err)
	}
	e.kill(t)

	// With the CA alone, a client without a certificate fails the handshake.
	addr = tlsAgent(t, e, ca, "--client-ca", caFile)
	if _, err := clientFor(t, addr, ca, nil, token).Health(ctx); err == nil || !strings.Contains(err.Error(), "tls:") {
		t.Errorf("no client certificate to a CA-only agent: %v, want a refused handshake", err)
	}
	if _, err := clientFor(t, addr, ca, &good, "").Health(ctx); err != nil {
		t.Errorf("CA-only agent with a good certificate: %v", err)
	}
}

func TestAgentRefusesUnauthenticatedTCP(t *testing.T) {
	testenv.RequireRoot(t, "the agent opens a pod store")
	dir := t.TempDir()
	for _, flags := range [][]string{
		{"--listen", "tcp://127.0.0.1:0"},
		{"--listen", "tcp://127.0.0.1:0", "--client-ca", "/nonexistent"},
	} {
		r := karman(t, dir, append([]string{"agent", "--cri-socket="}, flags...)...)
		if r.Code == 0 || !strings.Contains(r.Stderr, "refusing to serve TCP without TLS and client authentication") {
			t.Errorf("agent %v: %s; want a refusal", flags, r)
		}
	}
	// It touched nothing.
	if _, err := os.Stat(filepath.Join(dir, "agent")); err == nil {
		t.Errorf("a refused agent created its state directory")
	}
}
