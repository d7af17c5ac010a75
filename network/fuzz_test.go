package network

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// FuzzConfig writes a conflist and a network.json into a configuration
// directory and reads them as karman does. network.json: refusals wrap
// ErrConfig, what is accepted is within the documented limits and, encoded
// again, is read back the same. Conflists: Names lists a network exactly
// when loadConflist finds it, and prepareCNI accepts a network only if
// every plugin it names is a plain file name present in a plugin
// directory (a plugin type such as "../x" must not reach outside them).
func FuzzConfig(f *testing.F) {
	for _, s := range []struct{ conflist, netjson string }{
		{`{"cniVersion":"1.0.0","name":"mynet","plugins":[{"type":"bridge","bridge":"cni0","ipam":{"type":"host-local","subnet":"10.88.0.0/16"}},{"type":"portmap","capabilities":{"portMappings":true}}]}`, ``},
		{`{"cniVersion":"0.4.0","name":"default","plugins":[{"type":"bridge"}]}`, `{"version":1,"default":{"bridge":"k0","subnet":"10.9.0.0/24","masquerade":false,"mtu":1400},"cniPluginDirs":["/usr/lib/cni"]}`},
		{`{"cniVersion":"1.0.0","name":"up","plugins":[{"type":"../net.d/fuzz.conflist"}]}`, `{"version":1}`},
		{`{"cniVersion":"1.0.0","name":"abs","plugins":[{"type":"/bin/sh"}]}`, `{"version":2,"default":{"subnet":"::/0","bridge":"0123456789abcdefg"},"netnsDir":"rel"}`},
		{`{"cniVersion":"1.0.0","name":"nop","plugins":[]}`, `{"version":1,"unknown":1}`},
		{`{"name":"x","type":"bridge"}`, `{"version":1,"default":{"subnet":"10.0.0.1/30","mtu":-1}}`},
		{`not json`, `[]`},
	} {
		f.Add([]byte(s.conflist), []byte(s.netjson))
	}
	f.Fuzz(func(t *testing.T, conflist, netjson []byte) {
		dir := t.TempDir()
		plugins := filepath.Join(dir, "plugins")
		for _, d := range []string{filepath.Join(dir, CNIConfDir), plugins} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range []string{"bridge", "host-local", "portmap"} {
			if err := os.WriteFile(filepath.Join(plugins, p), nil, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, CNIConfDir, "fuzz.conflist"), conflist, 0o644); err != nil {
			t.Fatal(err)
		}
		if len(netjson) > 0 {
			if err := os.WriteFile(filepath.Join(dir, ConfigFile), netjson, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		checkNetworkJSON(t, dir)

		names := Names(dir)
		if !slices.Equal(names[:3], []string{None, Host, Default}) {
			t.Fatalf("Names = %v", names)
		}
		l, perr := libcni.ConfListFromBytes(conflist)
		for _, n := range names[3:] {
			got, _, err := loadConflist(filepath.Join(dir, CNIConfDir), n)
			if err != nil || got.Name != n {
				t.Fatalf("Names lists %q, which loadConflist does not find: %v", n, err)
			}
		}
		if perr != nil || slices.Contains(names[:3], l.Name) {
			return
		}
		if !slices.Contains(names, l.Name) {
			t.Fatalf("the conflist of network %q parses, but Names = %v", l.Name, names)
		}
		cfg := &Config{dir: dir, CNIPluginDirs: []string{plugins}}
		rec, err := prepareCNI(cfg, Attachment{Name: l.Name}, []PortMapping{{HostPort: 80, PodPort: 8080, Protocol: "tcp"}})
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("prepareCNI: %v does not wrap ErrConfig", err)
			}
			return
		}
		for _, p := range l.Plugins {
			typ := p.Network.Type
			if typ == "" || typ == "." || typ == ".." || strings.Contains(typ, "/") {
				t.Fatalf("prepareCNI accepted plugin type %q, which is not a plain file name in %s", typ, plugins)
			}
		}
		if _, err := libcni.ConfListFromBytes(rec.CNI.Conflist); err != nil {
			t.Fatalf("the recorded conflist does not parse: %v", err)
		}
	})
}

// checkNetworkJSON loads dir's network.json and checks what LoadConfig
// promises.
func checkNetworkJSON(t *testing.T, dir string) {
	t.Helper()
	c, err := LoadConfig(dir)
	if err != nil {
		if !errors.Is(err, ErrConfig) {
			t.Fatalf("LoadConfig: %v does not wrap ErrConfig", err)
		}
		return
	}
	d := c.Default
	if c.Version != 1 || d.Bridge == "" || len(d.Bridge) > 15 || !d.prefix.IsValid() || !d.prefix.Addr().Is4() || d.prefix.Bits() > 30 || d.MTU < 0 || d.Masquerade == nil {
		t.Fatalf("LoadConfig accepted %+v", c)
	}
	for _, p := range append([]string{c.NetNSDir, c.StateDir}, c.CNIPluginDirs...) {
		if !filepath.IsAbs(p) {
			t.Fatalf("LoadConfig accepted the relative path %q", p)
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	again := t.TempDir()
	if err := os.WriteFile(filepath.Join(again, ConfigFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	c2, err := LoadConfig(again)
	if err != nil {
		t.Fatalf("LoadConfig refuses the configuration it accepted, encoded again: %v\n%s", err, b)
	}
	c2.dir = c.dir
	if diff := cmp.Diff(c, c2, cmp.AllowUnexported(Config{}, DefaultConfig{}), cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
		t.Fatalf("network.json reads differently encoded again (-first +again):\n%s", diff)
	}
}

// FuzzParsePort checks that every --port value ParsePort accepts has
// ports from 1 to 65535 and a known protocol, and that its String form
// parses back to the same mapping; refusals name the flag.
func FuzzParsePort(f *testing.F) {
	for _, s := range []string{"8080:80", "8080:80/tcp", "53:53/udp", "0:80", "65536:1", "1:65535/sctp", "+1:2", "080:0x50", "1:2/tcp/udp", ":", "", "1:2:3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePort(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "--port ") {
				t.Fatalf("ParsePort(%q): %v does not name the flag", s, err)
			}
			return
		}
		if p.HostPort == 0 || p.PodPort == 0 || (p.Protocol != "tcp" && p.Protocol != "udp") {
			t.Fatalf("ParsePort(%q) = %+v", s, p)
		}
		again, err := ParsePort(p.String())
		if err != nil || again != p {
			t.Fatalf("ParsePort(%q) = %+v, whose String %q parses to %+v, %v", s, p, p.String(), again, err)
		}
	})
}
