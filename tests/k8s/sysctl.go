package k8s

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// kubeletTunables are the kernel settings a kubelet sets on the host as it
// starts (with protectKernelDefaults false, which is its default and what
// a test node needs: true makes it refuse to start on a host whose values
// differ): overcommit, panic on an oops, and the root key quotas.
var kubeletTunables = []string{
	"vm/overcommit_memory",
	"vm/panic_on_oom",
	"kernel/panic",
	"kernel/panic_on_oops",
	"kernel/keys/root_maxkeys",
	"kernel/keys/root_maxbytes",
}

// keepKernelTunables records the host's values of the settings a kubelet
// changes and registers their restoration, to run once the kubelet is
// gone (t.Cleanup runs last what was registered first: call it before the
// kubelet's own clean-up is registered). A test node leaves the host's
// kernel as it found it.
func keepKernelTunables(t testing.TB) {
	t.Helper()
	saved := map[string]string{}
	for _, k := range kubeletTunables {
		b, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			t.Fatalf("read the host's %s before the kubelet changes it: %v", k, err)
		}
		saved[k] = strings.TrimSpace(string(b))
	}
	t.Cleanup(func() {
		for k, v := range saved {
			p := filepath.Join("/proc/sys", k)
			if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == v {
				continue
			}
			if err := os.WriteFile(p, []byte(v), 0); err != nil {
				t.Errorf("restore the host's %s to %s after the kubelet: %v", k, v, err)
			}
		}
	})
}
