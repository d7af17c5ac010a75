package tests

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/internal/nldump"
	"github.com/karman-project/karman/network"
	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/tests/testenv"
)

// netEnv is a podEnv whose default network is the test's own: its own
// bridge, a /24 that no host uses (the addresses stay inside this machine),
// its own namespace and reservation directories. Leak checks look at these
// only: other tests and other people run pods on this machine meanwhile.
type netEnv struct {
	*podEnv
	bridge   string
	prefix   string // "10.231.X."
	netnsDir string
	ipamDir  string
	etc      string
	uuids    []string // pods whose veths the leak check looks for
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newNetEnv makes the environment; bits is the default subnet's prefix
// length (24 unless a test wants a small one).
func newNetEnv(t *testing.T, bits int) *netEnv {
	t.Helper()
	testenv.RequireRoot(t, "pod networks need network namespaces, links and nftables")
	testenv.RequireCommand(t, "ip", "apt-get install iproute2")
	testenv.RequireCommand(t, "iptables-save", "apt-get install iptables")
	x := testenv.FreeSubnet(t, "10.231", "kt")
	id := randHex(4)
	ne := &netEnv{
		bridge:   "kt" + id,
		prefix:   fmt.Sprintf("10.231.%d.", x),
		netnsDir: "/run/karman/test-netns-" + id,
		ipamDir:  t.TempDir(),
	}
	// Cleanups run last-registered first: the pods are collected (podEnv),
	// then nothing of them may be left, then the network goes.
	t.Cleanup(func() {
		if err := network.RemoveNetwork(ne.bridge); err != nil {
			t.Errorf("remove test network: %v", err)
		}
		unix.Unmount(ne.netnsDir, unix.MNT_DETACH)
		os.RemoveAll(ne.netnsDir)
	})
	t.Cleanup(func() { ne.assertNoNetLeaks(t) })
	ne.podEnv = newPodEnv(t)
	// Runs before podEnv's gc: the pods the test left, whose veths must go.
	t.Cleanup(func() {
		var pods []stage0.PodInfo
		json.Unmarshal([]byte(karman(t, ne.dir, "list", "--format", "json").Stdout), &pods)
		for _, p := range pods {
			ne.uuids = append(ne.uuids, p.UUID)
		}
	})
	ne.etc = filepath.Join(ne.dir, "etc")
	cfg := fmt.Sprintf(`{"version": 1, "default": {"bridge": %q, "subnet": "%s0/%d"}, "netnsDir": %q, "stateDir": %q}`,
		ne.bridge, ne.prefix, bits, ne.netnsDir, ne.ipamDir)
	if err := os.WriteFile(filepath.Join(ne.etc, network.ConfigFile), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return ne
}

// assertNoNetLeaks checks, after gc, that the test's network holds no pod:
// no namespace, no reservation, no port on the bridge, no forward rule.
func (ne *netEnv) assertNoNetLeaks(t *testing.T) {
	t.Helper()
	karman(t, ne.dir, "gc", "--grace-period=0")
	if ents, _ := os.ReadDir(ne.netnsDir); len(ents) != 0 {
		t.Errorf("network namespaces left in %s: %d", ne.netnsDir, len(ents))
	}
	if res, _ := network.Reservations(filepath.Join(ne.ipamDir, ne.bridge)); len(res) != 0 {
		t.Errorf("address reservations left: %v", res)
	}
	// The kernel destroys a namespace, and the veth in it, asynchronously.
	var ports []string
	for range 100 {
		if ports = ne.bridgePorts(t); len(ports) == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(ports) != 0 {
		t.Errorf("veths left on bridge %s: %v", ne.bridge, ports)
	}
	// Nor anywhere else: each pod's host veth is named after its UUID.
	for _, u := range ne.uuids {
		name := "kv" + strings.ReplaceAll(u, "-", "")[:12]
		for range 100 {
			if _, err := netlink.LinkByName(name); err != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := netlink.LinkByName(name); err == nil {
			t.Errorf("veth %s of pod %s left", name, u)
		}
	}
	if rules := ne.forwardRules(t); len(rules) != 0 {
		t.Errorf("port forward rules left: %v", rules)
	}
}

// bridgePorts lists the links attached to the test's bridge.
func (ne *netEnv) bridgePorts(t *testing.T) []string {
	t.Helper()
	br, err := netlink.LinkByName(ne.bridge)
	if err != nil {
		return nil
	}
	links, err := nldump.Retry(netlink.LinkList)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

// forwardRules lists the per-pod rules in the test network's table.
func (ne *netEnv) forwardRules(t *testing.T) []string {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tbl := &nftables.Table{Name: "karman-" + ne.bridge, Family: nftables.TableFamilyIPv4}
	var out []string
	for _, ch := range []string{"prerouting", "output"} {
		rules, _ := c.GetRules(tbl, &nftables.Chain{Name: ch, Table: tbl})
		for _, r := range rules {
			out = append(out, ch+": "+string(r.UserData))
		}
	}
	return out
}

// podIP is the pod's address on its network named name.
func (ne *netEnv) podIP(t *testing.T, uuid, name string) string {
	t.Helper()
	for _, n := range ne.status(t, uuid).Networks {
		if n.Name == name && len(n.Addresses) > 0 {
			ip, _, _ := strings.Cut(n.Addresses[0], "/")
			return ip
		}
	}
	t.Fatalf("pod %s has no address on %s: %+v", uuid, name, ne.status(t, uuid).Networks)
	return ""
}

// TestDefaultNetworkTCP: two pods on the default network exchange data over
// TCP with busybox nc, a pod reaches a server on the host (the bridge's
// address), and the host reaches a pod.
func TestDefaultNetworkTCP(t *testing.T) {
	ne := newNetEnv(t, 24)
	_, a := ne.startPod(t, "--net=default", ne.image, "--exec", "/bin/sh", "--", "-c", "while true; do nc -l -p 5000 -e /bin/cat; done")
	aIP := ne.podIP(t, a, "default")
	if !strings.HasPrefix(aIP, ne.prefix) {
		t.Fatalf("pod address %s is not in %s0/24", aIP, ne.prefix)
	}
	st := ne.status(t, a)
	if n := st.Networks[0]; n.Interface != "eth0" || n.Gateway != ne.prefix+"1" {
		t.Errorf("status networks: %+v", st.Networks)
	}
	if l := mustSucceed(t, karman(t, ne.dir, "list")).Stdout; !strings.Contains(l, "default:eth0="+aIP+"/24") {
		t.Errorf("list does not show the pod's network:\n%s", l)
	}
	if s := mustSucceed(t, karman(t, ne.dir, "status", a)).Stdout; !strings.Contains(s, "network-default-address="+aIP+"/24\n") {
		t.Errorf("status does not show the pod's address:\n%s", s)
	}
	// Pod to pod, and the pod's /etc/hosts names it.
	r := ne.run(t, "--net=default", "--hostname", "client", ne.image, "--exec", "/bin/sh", "--",
		"-c", "echo ping-from-b | nc "+aIP+" 5000; grep client /etc/hosts")
	if r.Code != 0 || !strings.Contains(r.Stdout, "ping-from-b") || !strings.Contains(r.Stdout, ne.prefix) {
		t.Errorf("pod to pod: %s", r)
	}
	// Host to pod.
	c, err := net.DialTimeout("tcp", aIP+":5000", 10*time.Second)
	if err != nil {
		t.Fatalf("host to pod: %v", err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintln(c, "from-host")
	line := make([]byte, 64)
	n, _ := c.Read(line)
	c.Close()
	if strings.TrimSpace(string(line[:n])) != "from-host" {
		t.Errorf("host to pod echo: %q", line[:n])
	}
	// Pod to host: a server on the bridge's address.
	l, err := net.Listen("tcp", ne.prefix+"1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c)
		got <- string(b)
	}()
	port := l.Addr().(*net.TCPAddr).Port
	r = ne.run(t, "--net=default", ne.image, "--exec", "/bin/sh", "--", "-c", fmt.Sprintf("echo to-host | nc %s1 %d", ne.prefix, port))
	if r.Code != 0 {
		t.Errorf("pod to host: %s", r)
	}
	select {
	case s := <-got:
		if strings.TrimSpace(s) != "to-host" {
			t.Errorf("host received %q", s)
		}
	case <-time.After(20 * time.Second):
		t.Error("host received nothing from the pod")
	}
	mustSucceed(t, karman(t, ne.dir, "stop", "--force", a))
}

// TestDefaultNetworkTeardownOnExit: a pod that ends frees its namespace,
// veth and address without gc; one whose supervisor is SIGKILLed keeps
// them until gc.
func TestDefaultNetworkTeardownOnExit(t *testing.T) {
	ne := newNetEnv(t, 24)
	r := mustSucceed(t, ne.run(t, "--net=default", ne.image, "--exec", "/bin/true"))
	_ = r
	if ents, _ := os.ReadDir(ne.netnsDir); len(ents) != 0 {
		t.Errorf("the ended pod's namespace is still there: %v", ents)
	}
	cmd, uuid := ne.startPod(t, "--net=default", "--port", fmt.Sprintf("%d:80", freePort(t)), ne.image, "--exec", "/bin/sleep", "--", "1000")
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if _, err := os.Stat(filepath.Join(ne.netnsDir, uuid)); err != nil {
		t.Errorf("killed pod's namespace: %v", err)
	}
	res, _ := network.Reservations(filepath.Join(ne.ipamDir, ne.bridge))
	if !slices.Contains(slices.Collect(mapValues(res)), uuid) {
		t.Errorf("killed pod's address is not reserved any more: %v", res)
	}
	if rules := ne.forwardRules(t); len(rules) != 2 {
		t.Errorf("killed pod's forwards: %v", rules)
	}
	// gc (in the cleanup) must undo all of it.
}

func mapValues(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

// freePort returns a TCP port that nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// testNetns makes a network namespace standing in for another host, linked
// to this one by a veth pair with a /30 of the test's own; it returns the
// namespace's name and the host end's address.
func testNetns(t *testing.T) (string, string) {
	t.Helper()
	id := randHex(4)
	ns, hostEnd := "ktn"+id, "ktv"+id
	b := make([]byte, 1)
	rand.Read(b)
	base := fmt.Sprintf("10.232.%d.", 1+int(b[0])%250)
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", hostEnd).Run()
		exec.Command("ip", "netns", "del", ns).Run()
	})
	for _, c := range [][]string{
		{"netns", "add", ns},
		{"link", "add", hostEnd, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"addr", "add", base + "1/30", "dev", hostEnd},
		{"link", "set", hostEnd, "up"},
		{"-n", ns, "addr", "add", base + "2/30", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "route", "add", "default", "via", base + "1"},
	} {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", c, err, out)
		}
	}
	return ns, base + "1"
}

// TestPortForward: --port answers from another network namespace and from
// the host's 127.0.0.1; a host port that a pod or a host socket has is
// refused before anything is made.
func TestPortForward(t *testing.T) {
	ne := newNetEnv(t, 24)
	hp := freePort(t)
	_, uuid := ne.startPod(t, "--net=default", "--port", fmt.Sprintf("%d:8080", hp), ne.image, "--exec", "/bin/sh", "--",
		"-c", "mkdir -p /www && echo pong-$(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www")
	get := func(url string) (string, error) {
		c := http.Client{Timeout: 10 * time.Second}
		var last error
		for range 50 { // httpd may still be starting
			resp, err := c.Get(url)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return string(b), nil
			}
			last = err
			time.Sleep(100 * time.Millisecond)
		}
		return "", last
	}
	body, err := get(fmt.Sprintf("http://127.0.0.1:%d/", hp))
	if err != nil || !strings.HasPrefix(body, "pong-") {
		t.Errorf("from 127.0.0.1: %q, %v", body, err)
	}
	ns, hostAddr := testNetns(t)
	// busybox nc rather than wget: Debian's static busybox wget crashes
	// outside an image.
	nc := exec.Command("ip", "netns", "exec", ns, "busybox", "nc", hostAddr, fmt.Sprint(hp))
	nc.Stdin = strings.NewReader("GET / HTTP/1.0\r\n\r\n")
	out, err := nc.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "\r\n\r\npong-") {
		t.Errorf("from another namespace: %q, %v", out, err)
	}

	// From another pod, through the host (hairpin).
	r := ne.run(t, "--net=default", ne.image, "--exec", "/bin/sh", "--", "-c", fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc %s1 %d`, ne.prefix, hp))
	if r.Code != 0 || !strings.Contains(r.Stdout, "pong-") {
		t.Errorf("from another pod through the host: %s", r)
	}

	// Taken by that pod: refused, and nothing of the second pod is left
	// (the cleanup's leak check).
	before := podCount(t, ne.dir)
	r = ne.run(t, "--net=default", "--port", fmt.Sprintf("%d:80", hp), ne.image, "--exec", "/bin/true")
	if r.Code != 254 || !strings.Contains(r.Stderr, "forwarded to pod "+uuid) {
		t.Errorf("port of another pod: %s", r)
	}
	// Taken by a host socket.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lp := l.Addr().(*net.TCPAddr).Port
	r = ne.run(t, "--net=default", "--port", fmt.Sprintf("%d:80", lp), ne.image, "--exec", "/bin/true")
	if r.Code != 254 || !strings.Contains(r.Stderr, "in use on the host") {
		t.Errorf("port of a host socket: %s", r)
	}
	if n := podCount(t, ne.dir); n != before {
		t.Errorf("refused pods left pod directories: %d, were %d", n, before)
	}
	mustSucceed(t, karman(t, ne.dir, "stop", "--force", uuid))
}

// assertRefused checks that r is karman's refusal naming want, and that
// pods pods and namespaces namespaces remain.
func (ne *netEnv) assertRefused(t *testing.T, r testenv.Result, want string, pods, namespaces int) {
	t.Helper()
	if r.Code != 254 || !strings.Contains(r.Stderr, want) {
		t.Errorf("want a refusal naming %q:\n%s", want, r)
	}
	if n := podCount(t, ne.dir); n != pods {
		t.Errorf("%d pods after the refusal, want %d", n, pods)
	}
	if ents, _ := os.ReadDir(ne.netnsDir); len(ents) != namespaces {
		t.Errorf("%d namespaces after the refusal, want %d", len(ents), namespaces)
	}
}

// podCount counts the pods of a data directory.
func podCount(t *testing.T, dir string) int {
	t.Helper()
	var pods []stage0.PodInfo
	json.Unmarshal([]byte(mustSucceed(t, karman(t, dir, "list", "--format", "json")).Stdout), &pods)
	return len(pods)
}

// TestTenPodsAtOnce: ten pods started at once get ten distinct addresses.
func TestTenPodsAtOnce(t *testing.T) {
	ne := newNetEnv(t, 24)
	var mu sync.Mutex
	var uuids []string
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			uuidFile := filepath.Join(t.TempDir(), "uuid")
			r := karman(t, ne.dir, "run", "--net=default", "--detach", "--uuid-file-save", uuidFile, ne.image, "--exec", "/bin/sleep", "--", "1000")
			if r.Code != 0 {
				t.Errorf("run: %s", r)
				return
			}
			mu.Lock()
			uuids = append(uuids, strings.TrimSpace(r.Stdout))
			mu.Unlock()
		})
	}
	wg.Wait()
	seen := map[string]string{}
	for _, u := range uuids {
		ip := ne.podIP(t, u, "default")
		if other, ok := seen[ip]; ok {
			t.Errorf("pods %s and %s both have %s", u, other, ip)
		}
		seen[ip] = u
	}
	if len(seen) != 10 {
		t.Errorf("%d distinct addresses for 10 pods", len(seen))
	}
	for _, u := range uuids {
		karman(t, ne.dir, "stop", "--force", u)
	}
	for _, u := range uuids {
		karman(t, ne.dir, "status", "--wait=20s", u)
	}
}

// TestNetworkLeaksAfterCycles: many run/gc cycles, some with ports, and
// SIGKILLed supervisors; the cleanup checks that nothing is left.
func TestNetworkLeaksAfterCycles(t *testing.T) {
	ne := newNetEnv(t, 24)
	for range 4 {
		var wg sync.WaitGroup
		for j := range 3 {
			wg.Go(func() {
				args := []string{"--net=default"}
				if j == 0 {
					args = append(args, "--port", fmt.Sprintf("%d:80", freePort(t)))
				}
				if r := ne.run(t, append(args, ne.image, "--exec", "/bin/true")...); r.Code != 0 {
					t.Errorf("run: %s", r)
				}
			})
		}
		wg.Wait()
		cmd, _ := ne.startPod(t, "--net=default", ne.image, "--exec", "/bin/sleep", "--", "1000")
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		var pods []stage0.PodInfo
		json.Unmarshal([]byte(mustSucceed(t, karman(t, ne.dir, "list", "--format", "json")).Stdout), &pods)
		for _, p := range pods {
			ne.uuids = append(ne.uuids, p.UUID) // for the leak check
		}
		mustSucceed(t, karman(t, ne.dir, "gc", "--grace-period=0"))
	}
}

// TestNetworkBadInput: each refused with a clear error, before anything
// is left behind (the cleanup's leak check, and no pod directory).
func TestNetworkBadInput(t *testing.T) {
	ne := newNetEnv(t, 30) // one address for pods
	netd := filepath.Join(ne.etc, network.CNIConfDir)
	os.MkdirAll(netd, 0o755)
	os.WriteFile(filepath.Join(netd, "10-broken.conflist"), []byte(`{"cniVersion": "1.0.0", "name": "broken", "plugins": [`), 0o644)
	os.WriteFile(filepath.Join(netd, "20-noplugin.conflist"), []byte(`{"cniVersion": "1.0.0", "name": "noplugin", "plugins": [{"type": "karman-no-such-plugin"}]}`), 0o644)
	for _, tc := range []struct {
		net, want string
	}{
		{"broken", "do not parse"},
		{"noplugin", `CNI plugin "karman-no-such-plugin"`},
		{"nosuchnet", `names network "nosuchnet"`},
		{"default,none", "cannot be combined"},
	} {
		r := ne.run(t, "--net="+tc.net, ne.image, "--exec", "/bin/true")
		if r.Code != 254 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("--net=%s: want %q:\n%s", tc.net, tc.want, r)
		}
	}
	// The subnet has one address: a second pod finds it taken.
	_, uuid := ne.startPod(t, "--net=default", ne.image, "--exec", "/bin/sleep", "--", "1000")
	ne.assertRefused(t, ne.run(t, "--net=default", ne.image, "--exec", "/bin/true"), "are reserved by pods", 1, 1)
	mustSucceed(t, karman(t, ne.dir, "stop", "--force", uuid))
	karman(t, ne.dir, "status", "--wait=20s", uuid)
	// Its address is free again once it ended.
	mustSucceed(t, ne.run(t, "--net=default", ne.image, "--exec", "/bin/true"))
}

// TestDNSFlags: --dns, --dns-search, --hostname and /etc/hosts.
func TestDNSFlags(t *testing.T) {
	ne := newNetEnv(t, 24)
	r := mustSucceed(t, ne.run(t, "--net=default", "--name", "named", "--hostname", "web1", "--dns", "192.0.2.53", "--dns", "192.0.2.54", "--dns-search", "example.test",
		ne.image, "--exec", "/bin/sh", "--", "-c", "cat /etc/resolv.conf /etc/hosts /etc/hostname"))
	for _, want := range []string{"nameserver 192.0.2.53\nnameserver 192.0.2.54", "search example.test", "\tweb1 named\n", ne.prefix} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("want %q in:\n%s", want, r.Stdout)
		}
	}
	r = mustSucceed(t, ne.run(t, "--net=none", "--dns", "none", ne.image, "--exec", "/bin/sh", "--", "-c", "cat /etc/resolv.conf || echo no-resolv-conf"))
	if !strings.Contains(r.Stdout, "no-resolv-conf") {
		t.Errorf("--dns none: %s", r.Stdout)
	}
	r = ne.run(t, "--dns", "not-an-ip", ne.image, "--exec", "/bin/true")
	if r.Code != 254 || !strings.Contains(r.Stderr, `--dns "not-an-ip"`) {
		t.Errorf("bad --dns: %s", r)
	}
}

// cniNet writes a conflist of Debian's bridge and host-local plugins with a
// bridge and a /24 of the test's own, and extra plugins after them, and
// returns its name and the subnet's first three octets.
func (ne *netEnv) cniNet(t *testing.T, extra string) (string, string) {
	t.Helper()
	for _, plugin := range []string{"bridge", "host-local", "tuning", "portmap"} {
		testenv.RequireFile(t, "/usr/lib/cni/"+plugin, "apt-get install containernetworking-plugins")
	}
	id := randHex(4)
	name, bridge, dataDir := "ktcni"+id, "kc"+id, t.TempDir()
	b := make([]byte, 1)
	rand.Read(b)
	prefix := fmt.Sprintf("10.233.%d.", 1+int(b[0])%250)
	t.Cleanup(func() {
		// After the pods are collected (registered later, run earlier):
		// nothing of them may be left on the bridge or in host-local.
		if l, err := netlink.LinkByName(bridge); err == nil {
			links, err := nldump.Retry(netlink.LinkList)
			if err != nil {
				t.Errorf("list links: %v", err)
			}
			for _, o := range links {
				if o.Attrs().MasterIndex == l.Attrs().Index {
					t.Errorf("veth %s left on CNI bridge %s", o.Attrs().Name, bridge)
				}
			}
			netlink.LinkDel(l)
		}
		ents, _ := os.ReadDir(filepath.Join(dataDir, name))
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), prefix) {
				t.Errorf("host-local reservation %s left", e.Name())
			}
		}
	})
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": %q, "plugins": [
		{"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
		 "ipam": {"type": "host-local", "ranges": [[{"subnet": "%s0/24"}]], "dataDir": %q}}%s]}`, name, bridge, prefix, dataDir, extra)
	netd := filepath.Join(ne.etc, network.CNIConfDir)
	os.MkdirAll(netd, 0o755)
	if err := os.WriteFile(filepath.Join(netd, "50-"+name+".conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return name, prefix
}

// TestCNIBridgeNetworks: a CNI network of Debian's bridge and host-local
// plugins carries TCP between pods; a pod joins the default network and
// the CNI one (eth0 and eth1, both in status); CNI_ARGS IP= chooses the
// address; gc leaves nothing on the CNI bridge or in host-local.
func TestCNIBridgeNetworks(t *testing.T) {
	ne := newNetEnv(t, 24)
	name, prefix := ne.cniNet(t, "")
	_, a := ne.startPod(t, "--net="+name+":IP="+prefix+"77", ne.image, "--exec", "/bin/sh", "--", "-c", "while true; do nc -l -p 5000 -e /bin/cat; done")
	if ip := ne.podIP(t, a, name); ip != prefix+"77" {
		t.Errorf("CNI_ARGS IP=%s77: pod has %s", prefix, ip)
	}
	_, b := ne.startPod(t, "--net=default,"+name, ne.image, "--exec", "/bin/sleep", "--", "1000")
	st := ne.status(t, b)
	if len(st.Networks) != 2 || st.Networks[0].Interface != "eth0" || st.Networks[1].Interface != "eth1" ||
		!strings.HasPrefix(st.Networks[1].Addresses[0], prefix) || !strings.HasPrefix(st.Networks[0].Addresses[0], ne.prefix) {
		t.Errorf("two networks: %+v", st.Networks)
	}
	r := karman(t, ne.dir, "enter", b, "/bin/sh", "-c", "echo over-cni | nc "+prefix+"77 5000; ip addr show eth1")
	if r.Code != 0 || !strings.Contains(r.Stdout, "over-cni") || !strings.Contains(r.Stdout, prefix) {
		t.Errorf("pod to pod over CNI: %s", r)
	}
	mustSucceed(t, karman(t, ne.dir, "stop", "--force", a, b))
	karman(t, ne.dir, "status", "--wait=20s", a)
	karman(t, ne.dir, "status", "--wait=20s", b)
}

// TestPreparedPodGetsNetworkWhenRun: a prepared pod holds no namespace or
// address; run-prepared makes them, and they go when the pod ends.
func TestPreparedPodGetsNetworkWhenRun(t *testing.T) {
	ne := newNetEnv(t, 24)
	uuid := strings.TrimSpace(mustSucceed(t, karman(t, ne.dir, "prepare", "--net=default", ne.image, "--exec", "/bin/sh", "--", "-c", "ip addr show eth0")).Stdout)
	if ents, _ := os.ReadDir(ne.netnsDir); len(ents) != 0 {
		t.Errorf("a prepared pod has a namespace: %v", ents)
	}
	if res, _ := network.Reservations(filepath.Join(ne.ipamDir, ne.bridge)); len(res) != 0 {
		t.Errorf("a prepared pod has an address: %v", res)
	}
	r := mustSucceed(t, karman(t, ne.dir, "run-prepared", uuid))
	if !strings.Contains(r.Stdout, "inet "+ne.prefix) {
		t.Errorf("run-prepared pod's eth0: %s", r.Stdout)
	}
	if n := ne.status(t, uuid).Networks; len(n) != 1 || !strings.HasPrefix(n[0].Addresses[0], ne.prefix) {
		t.Errorf("status networks: %+v", n)
	}
}

// TestCNIPluginFailsHalfWay: the bridge plugin succeeds, the next plugin of
// the list fails; the error says so, and DEL undoes the bridge plugin's
// work (the cleanups check the CNI bridge and host-local), nothing else is
// left.
func TestCNIPluginFailsHalfWay(t *testing.T) {
	ne := newNetEnv(t, 24)
	name, _ := ne.cniNet(t, `, {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.karman_no_such_sysctl": "1"}}`)
	r := ne.run(t, "--net=default,"+name, ne.image, "--exec", "/bin/true")
	ne.assertRefused(t, r, `plugin type="tuning" failed (add)`, 0, 0)
	if !strings.Contains(r.Stderr, "karman_no_such_sysctl") {
		t.Errorf("the plugin's own error is not shown: %s", r.Stderr)
	}
}

// TestPortForwardUDP: a UDP forward answers on 127.0.0.1.
func TestPortForwardUDP(t *testing.T) {
	ne := newNetEnv(t, 24)
	echo := buildTool(t, "udpecho")
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hp := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	_, uuid := ne.startPod(t, "--net=default", "--port", fmt.Sprintf("%d:5353/udp", hp), ne.image,
		"--volume", echo+":/udpecho:ro", "--exec", "/udpecho", "--", "5353")
	ne.waitLog(t, uuid, "listening")
	conn, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", hp))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 100)
	var got string
	for range 20 { // a datagram may be lost; retry, bounded
		conn.Write([]byte("hi-udp"))
		conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if n, err := conn.Read(buf); err == nil {
			got = string(buf[:n])
			break
		}
	}
	if got != "echo:hi-udp" {
		t.Errorf("UDP forward answered %q", got)
	}
	mustSucceed(t, karman(t, ne.dir, "stop", "--force", uuid))
}

// waitLog waits until the pod's log holds s.
func (ne *netEnv) waitLog(t *testing.T, uuid, s string) {
	t.Helper()
	for range 200 {
		if strings.Contains(karman(t, ne.dir, "logs", uuid).Stdout, s) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("pod %s never logged %q", uuid, s)
}

// TestCNIPortMap: with Debian's portmap plugin in the list, --port reaches
// it as the portMappings capability and answers on 127.0.0.1; when the
// pod ends, the teardown command runs DEL and no rule naming the pod is
// left in iptables.
func TestCNIPortMap(t *testing.T) {
	ne := newNetEnv(t, 24)
	name, _ := ne.cniNet(t, `, {"type": "portmap", "capabilities": {"portMappings": true}}`)
	hp := freePort(t)
	_, uuid := ne.startPod(t, "--net="+name, "--port", fmt.Sprintf("%d:8080", hp), ne.image, "--exec", "/bin/sh", "--",
		"-c", "mkdir -p /www && echo pong-cni > /www/index.html && exec httpd -f -p 8080 -h /www")
	if rules := iptablesRules(t, uuid); len(rules) == 0 {
		t.Errorf("portmap made no rule for pod %s", uuid)
	}
	var body string
	c := http.Client{Timeout: 5 * time.Second}
	for range 50 {
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", hp))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.HasPrefix(body, "pong-cni") {
		t.Errorf("CNI port forward from 127.0.0.1: %q", body)
	}
	mustSucceed(t, karman(t, ne.dir, "stop", "--force", uuid))
	karman(t, ne.dir, "status", "--wait=20s", uuid)
	// The supervisor ran the teardown command before it released the pod.
	if rules := iptablesRules(t, uuid); len(rules) != 0 {
		t.Errorf("rules of the ended pod left: %v", rules)
	}
}

// iptablesRules lists the nat rules that name a pod (portmap tags them with
// the container ID).
func iptablesRules(t *testing.T, uuid string) []string {
	t.Helper()
	out, err := exec.Command("iptables-save", "-t", "nat").Output()
	if err != nil {
		t.Fatalf("iptables-save: %v", err)
	}
	var rules []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, uuid) {
			rules = append(rules, l)
		}
	}
	return rules
}

// TestDefaultNetworkFailsHalfWay: the network's bridge name is taken by a
// link that is no bridge; the namespace was made before that shows, and
// nothing of it, nor of the pod, is left.
func TestDefaultNetworkFailsHalfWay(t *testing.T) {
	ne := newNetEnv(t, 24)
	if out, err := exec.Command("ip", "link", "add", ne.bridge, "type", "veth", "peer", "name", "ktp"+randHex(4)).CombinedOutput(); err != nil {
		t.Fatalf("ip link add: %v: %s", err, out)
	}
	ne.assertRefused(t, ne.run(t, "--net=default", ne.image, "--exec", "/bin/true"), "not a bridge", 0, 0)
}

// TestDefaultSubnetOverlapsRoute: a subnet that a host route covers (here
// the test's own /30 to another namespace) is refused when the bridge
// would be made, before it is.
func TestDefaultSubnetOverlapsRoute(t *testing.T) {
	ne := newNetEnv(t, 24)
	_, hostAddr := testNetns(t)
	cfg := fmt.Sprintf(`{"version": 1, "default": {"bridge": %q, "subnet": "%s/24"}, "netnsDir": %q, "stateDir": %q}`,
		ne.bridge, hostAddr, ne.netnsDir, ne.ipamDir)
	if err := os.WriteFile(filepath.Join(ne.etc, network.ConfigFile), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ne.assertRefused(t, ne.run(t, "--net=default", ne.image, "--exec", "/bin/true"), "overlaps the host's route", 0, 0)
	if _, err := netlink.LinkByName(ne.bridge); err == nil {
		t.Errorf("bridge %s made despite the overlap", ne.bridge)
	}
}
