package stage1

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/karman-project/karman/stage1/poddir"
	"github.com/karman-project/karman/tests/testenv"
)

// testNetNS makes a named network namespace (at /run/netns/NAME) holding a
// veth pair (kdummy0, kdummy1), and removes it at the end if the pod did not.
func testNetNS(t *testing.T) string {
	t.Helper()
	name := "kst" + randomHex()[:8]
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	for _, c := range [][]string{{"netns", "add", name}, {"-n", name, "link", "add", "kdummy0", "type", "veth", "peer", "name", "kdummy1"}} {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", c, err, out)
		}
	}
	return filepath.Join("/run/netns", name)
}

// TestJoinNetNS: a pod with NetNS runs in that namespace, and the
// supervisor removes the namespace when the pod ends; with Teardown it
// runs that command (with the pod directory) instead.
func TestJoinNetNS(t *testing.T) {
	testenv.RequireRoot(t, "network namespaces")
	ns := testNetNS(t)
	p := newPod(t, func(p *poddir.Pod) { p.Net, p.NetNS = "test", ns }, sh("app", "ip link show kdummy0 >/dev/null && echo joined"))
	p.expect(p.run(), 0)
	if !strings.Contains(p.log("app"), "joined") {
		t.Errorf("the app is not in the pod's namespace: %q %q", p.log("app"), p.stderr())
	}
	if _, err := os.Stat(ns); !os.IsNotExist(err) {
		t.Errorf("the namespace is still there after the pod ended: %v", err)
	}

	ns = testNetNS(t)
	p = newPod(t, func(p *poddir.Pod) {
		p.Net, p.NetNS = "test", ns
		p.Teardown = []string{"/bin/sh", "-c", `echo "$0" > "$0/torn-down"`}
	}, sh("app", "exit 3"))
	p.expect(p.run(), 3)
	if got := strings.TrimSpace(readFile(t, filepath.Join(p.dir, "torn-down"))); got != p.dir {
		t.Errorf("teardown got %q, want the pod directory %s", got, p.dir)
	}
	if _, err := os.Stat(ns); err != nil {
		t.Errorf("with Teardown set the namespace is the command's to remove: %v", err)
	}
}
