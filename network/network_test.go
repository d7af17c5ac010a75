package network

import (
	"context"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseNet(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Attachment
		err  string
	}{
		{in: "", want: []Attachment{{Name: "default"}}},
		{in: "none", want: []Attachment{{Name: "none"}}},
		{in: "default,mynet:IP=10.1.2.3;FOO=bar", want: []Attachment{{Name: "default"}, {Name: "mynet", Args: [][2]string{{"IP", "10.1.2.3"}, {"FOO", "bar"}}}}},
		{in: "none,default", err: "cannot be combined"},
		{in: "a,a", err: "given twice"},
		{in: "a b", err: "not a network name"},
		{in: "x:novalue", err: "use K=V"},
		{in: "host:A=1", err: "takes no arguments"},
	} {
		got, err := ParseNet(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseNet(%q) = %v, want error %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseNet(%q): %v", tc.in, err)
		} else if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("ParseNet(%q): %s", tc.in, d)
		}
	}
}

func TestParsePort(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want PortMapping
		err  bool
	}{
		{in: "8080:80", want: PortMapping{8080, 80, "tcp"}},
		{in: "53:53/udp", want: PortMapping{53, 53, "udp"}},
		{in: "0:80", err: true},
		{in: "8080", err: true},
		{in: "8080:80/sctp", err: true},
		{in: "70000:80", err: true},
	} {
		got, err := ParsePort(tc.in)
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("ParsePort(%q) = %v, %v", tc.in, got, err)
		}
	}
	if err := CheckPorts([]PortMapping{{80, 1, "tcp"}, {80, 2, "tcp"}, {80, 3, "udp"}}); err == nil || !strings.Contains(err.Error(), "tcp/80 given twice") {
		t.Errorf("CheckPorts: %v", err)
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	c, err := LoadConfig(dir)
	if err != nil || c.Default.Bridge != DefaultBridge || c.Default.prefix.String() != DefaultSubnet || !*c.Default.Masquerade {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	for body, want := range map[string]string{
		`{"version": 1, "bogus": 1}`: "unknown field",
		`{"version": 2}`:             "version 2",
		`{"version": 1, "default": {"subnet": "10.0.0.0/31"}}`:      "at most /30",
		`{"version": 1, "default": {"bridge": "a-very-long-name"}}`: "longer than 15",
		`{"version": 1, "netnsDir": "relative"}`:                    "absolute",
	} {
		os.WriteFile(filepath.Join(dir, ConfigFile), []byte(body), 0o644)
		if _, err := LoadConfig(dir); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
}

// TestIPAM: distinct addresses under concurrency, exhaustion, release by
// UUID, and a reservation whose namespace is gone counting as free.
func TestIPAM(t *testing.T) {
	dir := t.TempDir()
	ns := "/proc/self/ns/net"                                                                 // a network namespace that stays
	m := &ipam{dir: filepath.Join(dir, "ipam"), prefix: netip.MustParsePrefix("10.9.9.0/29")} // .2 to .6
	var mu sync.Mutex
	got := map[netip.Addr]string{}
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			uuid := string(rune('a'+i)) + "-pod"
			a, err := m.allocate(context.Background(), uuid, ns)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if o, ok := got[a]; ok {
				t.Errorf("%s given to %s and %s", a, o, uuid)
			}
			got[a] = uuid
		})
	}
	wg.Wait()
	if len(got) != 5 {
		t.Fatalf("got %v", got)
	}
	if _, err := m.allocate(context.Background(), "f-pod", ns); err == nil || !strings.Contains(err.Error(), "all 5 addresses") {
		t.Errorf("exhausted: %v", err)
	}
	var a netip.Addr
	for k, v := range got {
		if v == "c-pod" {
			a = k
		}
	}
	if err := m.release("c-pod", netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if b, err := m.allocate(context.Background(), "g-pod", ns); err != nil || b != a {
		t.Errorf("after release: %v, %v, want %v", b, err, a)
	}
	// A pod whose namespace is gone holds nothing, nor one whose
	// namespace path is a plain file (left by a reboot where /run is no
	// tmpfs).
	for _, gone := range []string{filepath.Join(dir, "gone"), filepath.Join(dir, "plain")} {
		os.WriteFile(gone, nil, 0o644)
		res, _ := Reservations(m.dir)
		for a, u := range res {
			if u == "b-pod" || u == "h-pod" {
				m.release(u, netip.MustParseAddr(a))
			}
		}
		h, err := m.allocate(context.Background(), "h-pod", gone)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(gone) == "gone" {
			os.Remove(gone)
		}
		if b, err := m.allocate(context.Background(), "b-pod", ns); err != nil || b != h {
			t.Errorf("%s: stale reservation: %v, %v, want %v", gone, b, err, h)
		}
	}
	if res, _ := Reservations(m.dir); len(res) != 5 || !slices.Contains(slices.Collect(maps.Values(res)), "b-pod") {
		t.Errorf("reservations: %v", res)
	}
}

func TestResolvConfAndHosts(t *testing.T) {
	rec := &Record{Networks: []*netRec{{Status: Status{Name: "a", Addresses: []string{"10.1.0.5/24"}, Nameservers: []string{"10.1.0.1"}, Search: []string{"a.test"}}}}}
	for _, tc := range []struct {
		dns   DNS
		net   string
		rec   *Record
		want  string
		write bool
	}{
		{DNS{Servers: []string{"none"}}, "default", rec, "", false},
		{DNS{}, "none", nil, "", false},
		{DNS{}, "default", rec, "search a.test\nnameserver 10.1.0.1\n", true},
		{DNS{Servers: []string{"192.0.2.1"}, Search: []string{"x.test"}}, "default", rec, "search x.test\nnameserver 192.0.2.1\n", true},
		{DNS{Servers: []string{"192.0.2.1"}, Options: []string{"ndots:5", "edns0"}}, "default", rec, "nameserver 192.0.2.1\noptions ndots:5 edns0\n", true},
	} {
		got, ok := ResolvConf(tc.dns, tc.net, tc.rec)
		if ok != tc.write || !strings.HasSuffix(got, tc.want) {
			t.Errorf("ResolvConf(%+v, %s) = %q, %v", tc.dns, tc.net, got, ok)
		}
	}
	if err := (DNS{Servers: []string{"host", "1.1.1.1"}}).Check(); err == nil {
		t.Error("host with an address accepted")
	}
	if err := (DNS{Options: []string{"ndots:5 rotate"}}).Check(); err == nil {
		t.Error("a DNS option with a space accepted")
	}
	if h := Hosts("web", "named", rec); !strings.Contains(h, "10.1.0.5\tweb named\n") || strings.Contains(h, "127.0.1.1") {
		t.Errorf("Hosts: %q", h)
	}
	if h := Hosts("web", "", nil); !strings.Contains(h, "127.0.1.1\tweb\n") {
		t.Errorf("Hosts without address: %q", h)
	}
}

func TestLoadConflist(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "10-bad.conflist"), []byte(`{"name": `), 0o644)
	os.WriteFile(filepath.Join(dir, "20-ok.conflist"), []byte(`{"cniVersion": "1.1.0", "name": "ok", "plugins": [{"type": "bridge"}, {"type": "nope-plugin"}]}`), 0o644)
	l, file, err := loadConflist(dir, "ok")
	if err != nil || l.Name != "ok" || filepath.Base(file) != "20-ok.conflist" {
		t.Fatalf("loadConflist: %v", err)
	}
	if _, _, err := loadConflist(dir, "other"); err == nil || !strings.Contains(err.Error(), "10-bad.conflist") {
		t.Errorf("broken file not named: %v", err)
	}
	plugins := t.TempDir()
	os.WriteFile(filepath.Join(plugins, "bridge"), nil, 0o755)
	if err := findPlugins(l, file, []string{plugins}); err == nil || !strings.Contains(err.Error(), `"nope-plugin"`) || strings.Contains(err.Error(), `"bridge"`) {
		t.Errorf("findPlugins: %v", err)
	}
}
