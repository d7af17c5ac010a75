package k8s

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCertificates checks the cluster's certificates chain to its CA with
// the names and usages each component needs.
func TestCertificates(t *testing.T) {
	c := &Cluster{o: Options{Dir: t.TempDir()}, NodeName: "127.0.0.1"}
	if err := c.certificates(); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.pki.caCert)
	for _, tc := range []struct {
		name, cn, org string
		usage         x509.ExtKeyUsage
		host          string
	}{
		{"apiserver", "kube-apiserver", "", x509.ExtKeyUsageServerAuth, ServiceIP},
		{"apiserver", "kube-apiserver", "", x509.ExtKeyUsageServerAuth, "127.0.0.1"},
		{"apiserver", "kube-apiserver", "", x509.ExtKeyUsageServerAuth, "kubernetes.default.svc"},
		{"kubelet-serving", "system:node:127.0.0.1", "system:nodes", x509.ExtKeyUsageServerAuth, "127.0.0.1"},
		{"kubelet-client", "system:node:127.0.0.1", "system:nodes", x509.ExtKeyUsageClientAuth, ""},
		{"admin", "kubernetes-admin", "system:masters", x509.ExtKeyUsageClientAuth, ""},
		{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters", x509.ExtKeyUsageClientAuth, ""},
		{"scheduler", "system:kube-scheduler", "", x509.ExtKeyUsageClientAuth, ""},
		{"controller-manager", "system:kube-controller-manager", "", x509.ExtKeyUsageClientAuth, ""},
	} {
		pair, err := tls.LoadX509KeyPair(c.path(tc.name+".crt"), c.path(tc.name+".key"))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		cert, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: tc.host, KeyUsages: []x509.ExtKeyUsage{tc.usage}, CurrentTime: time.Now()}); err != nil {
			t.Errorf("%s for %q: %v", tc.name, tc.host, err)
		}
		if cert.Subject.CommonName != tc.cn {
			t.Errorf("%s: CN %q, want %q", tc.name, cert.Subject.CommonName, tc.cn)
		}
		if tc.org != "" && (len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != tc.org) {
			t.Errorf("%s: O %v, want %s", tc.name, cert.Subject.Organization, tc.org)
		}
	}
	for _, f := range []string{"sa.key", "sa.pub", "ca.key"} {
		fi, err := os.Stat(filepath.Join(c.o.Dir, "pki", f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
}

func TestHexAddr(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ip   string
		port int
	}{
		{"0100007F:0050", "127.0.0.1", 80},
		{"0101DE0A:1F90", "10.222.1.1", 8080},
		{"00000000000000000000000001000000:0016", "::1", 22},
	} {
		ip, port, err := hexAddr(tc.in)
		if err != nil || !ip.Equal(net.ParseIP(tc.ip)) || port != tc.port {
			t.Errorf("hexAddr(%s) = %v %d %v, want %s %d", tc.in, ip, port, err, tc.ip, tc.port)
		}
	}
}

// TestConnections finds a connection of this process to a loopback
// listener, and OffLoopback lets it be.
func TestConnections(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cs, err := Connections([]int{os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	found := false
	for _, c := range cs {
		found = found || (c.Remote.Equal(net.ParseIP("127.0.0.1")) && c.Port == port)
	}
	if !found {
		t.Errorf("no connection to 127.0.0.1:%d among %v", port, cs)
	}
	off, err := OffLoopback([]int{os.Getpid()}, nil)
	if err != nil || len(off) != 0 {
		t.Errorf("OffLoopback = %v, %v", off, err)
	}
}

func TestPercentile(t *testing.T) {
	var ps []PodStart
	for i := 1; i <= 20; i++ {
		ps = append(ps, PodStart{Latency: time.Duration(21-i) * time.Millisecond})
	}
	if got := Percentile(ps, 50); got != 10*time.Millisecond {
		t.Errorf("p50 = %v, want 10ms", got)
	}
	if got := Percentile(ps, 95); got != 19*time.Millisecond {
		t.Errorf("p95 = %v, want 19ms", got)
	}
}
