package leakcheck

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/karman-project/karman/tests/testenv"
)

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestCheckSeesLeaks: a pod directory and a link left behind fail the
// check, and nothing left passes it.
func TestCheckSeesLeaks(t *testing.T) {
	testenv.RequireRoot(t, "links need CAP_NET_ADMIN")
	dir := t.TempDir()
	bridge := "klc" + fmt.Sprint(os.Getpid()%100000)
	rec := &recorder{TB: t}
	c := Start(rec, Scope{DataDir: dir, Bridge: bridge})
	pod := filepath.Join(dir, "pods", "run", "0b7a1c52-6f2e-4d7e-9a51-0c1e2d3f4a5b")
	if err := os.MkdirAll(pod, 0o700); err != nil {
		t.Fatal(err)
	}
	la := netlink.NewLinkAttrs()
	la.Name = bridge
	if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(bridge); err == nil {
			netlink.LinkDel(l)
		}
	})
	c.Check()
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "run/0b7a1c52") || !strings.Contains(rec.errs[0], "bridge "+bridge) {
		t.Fatalf("leaks not reported: %q", rec.errs)
	}
	rec.errs = nil
	os.RemoveAll(pod)
	if l, err := netlink.LinkByName(bridge); err == nil {
		netlink.LinkDel(l)
	}
	c.Check()
	if len(rec.errs) != 0 {
		t.Fatalf("a clean host reported: %q", rec.errs)
	}
}
