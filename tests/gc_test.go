package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/karman-project/karman/network"
	"github.com/karman-project/karman/stage1/poddir"
	"github.com/karman-project/karman/tests/leakcheck"
	"github.com/karman-project/karman/tests/testenv"
)

// gcEnv is a netEnv with a leak check of the whole scope of its data
// directory and network, started before any pod.
type gcEnv struct {
	*netEnv
	leaks *leakcheck.Checker
}

func newGCEnv(t *testing.T) *gcEnv {
	t.Helper()
	ne := newNetEnv(t, 24)
	return &gcEnv{netEnv: ne, leaks: leakcheck.Start(t, leakcheck.Scope{DataDir: ne.dir, NetNSDir: ne.netnsDir, Bridge: ne.bridge})}
}

// killedPod starts a pod on the default network (and the CNI network cni,
// if any) with a port forward and kills its supervisor with SIGKILL, which
// leaves everything for gc: the network namespace, the veth, the address,
// the forward, the cgroups, the CNI plugins' work.
func (e *gcEnv) killedPod(t *testing.T, cni string) string {
	t.Helper()
	net := "--net=default"
	if cni != "" {
		net += "," + cni
	}
	cmd, uuid := e.startPod(t, net, "--port", fmt.Sprintf("%d:80", freePort(t)), e.image, "--exec", "/bin/sleep", "--", "1000")
	e.leaks.Track(uuid)
	e.uuids = append(e.uuids, uuid)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	mustSucceed(t, karman(t, e.dir, "status", "--wait=20s", uuid))
	if rules, _ := network.PodRules(uuid); len(rules) == 0 {
		t.Fatalf("pod %s has no forward rule left to clean: the test proves nothing", uuid)
	}
	return uuid
}

// TestGCDamagedNetworkRecord: a garbage net/record.json neither wedges gc
// nor rm; the pod goes with everything it made, CNI networks included
// (the CNI network's cleanup checks its bridge and host-local).
func TestGCDamagedNetworkRecord(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  []string
		cni  bool
	}{
		{"gc", []string{"gc", "--grace-period=0"}, false},
		{"rm", []string{"rm"}, false},
		{"gc-cni", []string{"gc", "--grace-period=0"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newGCEnv(t)
			cni := ""
			if tc.cni {
				cni, _ = e.cniNet(t, "")
			}
			uuid := e.killedPod(t, cni)
			rec := filepath.Join(e.dir, "pods", "run", uuid, network.RecordFile)
			if err := os.WriteFile(rec, []byte("{garbage\x00"), 0o644); err != nil {
				t.Fatal(err)
			}
			args := tc.cmd
			if args[0] == "rm" {
				args = append(args, uuid)
			}
			r := karman(t, e.dir, args...)
			if r.Code != 0 {
				t.Fatalf("%s with a damaged network record:\n%s", args[0], r)
			}
			if args[0] == "gc" && !strings.Contains(r.Stdout, "removed "+uuid) {
				t.Errorf("gc did not remove the pod:\n%s", r)
			}
			// And gc has nothing left to complain about.
			mustSucceed(t, karman(t, e.dir, "gc", "--all"))
			e.leaks.Check()
		})
	}
}

// TestGCMissingStateDir: a pod whose state/ directory is gone still has
// its cgroups removed when gc says it removed it.
func TestGCMissingStateDir(t *testing.T) {
	e := newGCEnv(t)
	cmd, uuid := e.startPod(t, e.image, "--exec", "/bin/sleep", "--", "1000")
	e.leaks.Track(uuid)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	mustSucceed(t, karman(t, e.dir, "status", "--wait=20s", uuid))
	if dirs, _ := filepath.Glob("/sys/fs/cgroup/*/karman/" + uuid); len(dirs) == 0 {
		t.Fatal("the killed pod left no cgroup: the test proves nothing")
	}
	if err := os.RemoveAll(filepath.Join(e.dir, "pods", "run", uuid, poddir.StateDir)); err != nil {
		t.Fatal(err)
	}
	r := mustSucceed(t, karman(t, e.dir, "gc", "--grace-period=0"))
	if !strings.Contains(r.Stdout, "removed "+uuid) {
		t.Errorf("gc did not remove the pod:\n%s", r)
	}
	mustSucceed(t, karman(t, e.dir, "gc", "--all"))
	e.leaks.Check()
}

// TestConcurrentRmAndGC: rm and gc racing on the same pods, whose networks
// are still up: every command exits 0, each pod is removed once, nothing
// is left.
func TestConcurrentRmAndGC(t *testing.T) {
	e := newGCEnv(t)
	const pods, rms, gcs = 4, 3, 3
	var uuids []string
	for range pods {
		uuids = append(uuids, e.killedPod(t, ""))
	}
	var wg sync.WaitGroup
	results := make([]testenv.Result, rms+gcs)
	for i := range results {
		args := []string{"gc", "--grace-period=0"}
		if i < rms {
			args = append([]string{"rm"}, uuids...)
		}
		wg.Go(func() { results[i] = karman(t, e.dir, args...) })
	}
	wg.Wait()
	removed := map[string]int{}
	for _, r := range results {
		if r.Code != 0 {
			t.Errorf("racing rm and gc:\n%s", r)
		}
		for _, line := range strings.Split(r.Stdout, "\n") {
			for _, u := range uuids {
				if line == u || line == "removed "+u {
					removed[u]++
				}
			}
		}
	}
	for _, u := range uuids {
		if removed[u] != 1 {
			t.Errorf("pod %s reported removed %d times, want once", u, removed[u])
		}
	}
	mustSucceed(t, karman(t, e.dir, "gc", "--all"))
	e.leaks.Check()
}

// TestGCAllLeavesNothing: after pods on the default network, `gc --all`
// also removes what gc keeps by design (the bridge, its nftables table,
// the namespace directory's mount): the host is as before the first pod.
func TestGCAllLeavesNothing(t *testing.T) {
	e := newGCEnv(t)
	mustSucceed(t, e.run(t, "--net=default", "--port", fmt.Sprintf("%d:80", freePort(t)), e.image, "--exec", "/bin/true"))
	e.killedPod(t, "")
	if len(e.leaks.Snapshot().Links) == 0 {
		t.Fatal("no bridge after a pod on the default network: the test proves nothing")
	}
	r := mustSucceed(t, karman(t, e.dir, "gc", "--all"))
	if !strings.Contains(r.Stdout, "removed network "+e.bridge) {
		t.Errorf("gc --all:\n%s", r)
	}
	e.leaks.Check()
	// With a pod left, the network stays.
	cmd, _ := e.startPod(t, "--net=default", e.image, "--exec", "/bin/sleep", "--", "1000")
	r = mustSucceed(t, karman(t, e.dir, "gc", "--all"))
	if strings.Contains(r.Stdout, "removed network") {
		t.Errorf("gc --all removed the network of a running pod:\n%s", r)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}

// TestGCNeverWedges: a pod whose CNI DEL keeps failing (its plugin was
// removed) does not stop gc: gc undoes the rest, keeps the pod, says what
// to do and collects the other pods; `rm --force` then removes the pod,
// reporting what it leaves; gc is clean afterwards.
func TestGCNeverWedges(t *testing.T) {
	e := newGCEnv(t)
	// A CNI network whose plugins are links in a directory of the test's.
	plugins := t.TempDir()
	for _, p := range []string{"bridge", "host-local"} {
		if err := os.Symlink(filepath.Join("/usr/lib/cni", p), filepath.Join(plugins, p)); err != nil {
			t.Fatal(err)
		}
	}
	id := randHex(4)
	name, bridge := "ktcni"+id, "kc"+id
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(bridge); err == nil {
			netlink.LinkDel(l)
		}
	})
	cfg := fmt.Sprintf(`{"version": 1, "default": {"bridge": %q, "subnet": "%s0/24"}, "netnsDir": %q, "stateDir": %q, "cniPluginDirs": [%q]}`,
		e.bridge, e.prefix, e.netnsDir, e.ipamDir, plugins)
	if err := os.WriteFile(filepath.Join(e.etc, network.ConfigFile), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": %q, "plugins": [{"type": "bridge", "bridge": %q,
		"ipam": {"type": "host-local", "ranges": [[{"subnet": "10.234.%d.0/24"}]], "dataDir": %q}}]}`, name, bridge, 1+int(id[0])%250, t.TempDir())
	os.MkdirAll(filepath.Join(e.etc, network.CNIConfDir), 0o755)
	if err := os.WriteFile(filepath.Join(e.etc, network.CNIConfDir, "50-"+name+".conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	stuck := e.killedPod(t, name)
	other := e.killedPod(t, "")
	if err := os.Remove(filepath.Join(plugins, "bridge")); err != nil {
		t.Fatal(err)
	}
	r := karman(t, e.dir, "gc", "--grace-period=0")
	if r.Code != 254 || !strings.Contains(r.Stderr, "rm --force "+stuck) || strings.Count(r.Stderr, "CNI DEL") != 1 {
		t.Errorf("gc with a pod whose CNI DEL fails: want exit 254 and one line naming `rm --force %s`:\n%s", stuck, r)
	}
	if !strings.Contains(r.Stdout, "removed "+other) || strings.Contains(r.Stdout, "removed "+stuck) {
		t.Errorf("gc must collect the other pod and keep the stuck one:\n%s", r)
	}
	// What could be undone was: only the pod directory is left.
	if s := e.leaks.Snapshot(); len(s.NetNS) != 0 || len(s.Cgroups) != 0 || len(s.Pods) != 1 {
		t.Errorf("gc left more than the stuck pod's directory: %+v", s)
	}
	r = karman(t, e.dir, "rm", "--force", stuck)
	if r.Code != 254 || !strings.Contains(r.Stderr, "removed, but") || !strings.Contains(r.Stderr, "CNI DEL") {
		t.Errorf("rm --force: want the pod removed and what is left named:\n%s", r)
	}
	mustSucceed(t, karman(t, e.dir, "gc", "--all"))
	e.leaks.Check()
}
