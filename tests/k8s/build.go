package k8s

import (
	"path/filepath"
	"testing"

	"github.com/karman-project/karman/tests/testenv"
)

// The versions the wrapper modules in ./build require, and where
// scripts/k8s-build.sh keeps what it builds of them.
const (
	Version     = "v1.37.2"
	EtcdVersion = "v3.7.3"
	BinDir      = "/var/cache/karman/k8s-" + Version
	EtcdDir     = "/var/cache/karman/etcd-" + EtcdVersion
)

// setupHint is how to get the binaries.
const setupHint = "scripts/setup.sh --tests (it builds the Kubernetes components and etcd with scripts/k8s-build.sh, about 10 minutes the first time)"

// Binary is the path of a Kubernetes command built by
// scripts/k8s-build.sh: kubelet, kube-apiserver, kube-scheduler,
// kube-controller-manager or kubectl.
func Binary(name string) string { return filepath.Join(BinDir, name) }

// Etcd is the path of the etcd server built by scripts/k8s-build.sh.
func Etcd() string { return filepath.Join(EtcdDir, "etcd") }

// RequireBinaries stops t (testenv.Missing: fails in strict mode) unless
// every named Kubernetes command ("etcd" for etcd) is built.
func RequireBinaries(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		p := Binary(n)
		if n == "etcd" {
			p = Etcd()
		}
		testenv.RequireFile(t, p, setupHint)
	}
}
