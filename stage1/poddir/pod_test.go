package poddir

import (
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	good := func() *Pod {
		return &Pod{Net: "none", Apps: []App{{Name: "web", Dir: "apps/web", Args: []string{"sh"}}}}
	}
	if err := good().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Pod){
		"net":       func(p *Pod) { p.Net, p.NetNS = "host", "/run/x" },
		"no-apps":   func(p *Pod) { p.Apps = nil },
		"name":      func(p *Pod) { p.Apps[0].Name = "../x" },
		"duplicate": func(p *Pod) { p.Apps = append(p.Apps, p.Apps[0]) },
		"no-args":   func(p *Pod) { p.Apps[0].Args = nil },
		"dir":       func(p *Pod) { p.Apps[0].Dir = "../other" },
		"abs-dir":   func(p *Pod) { p.Apps[0].Dir = "/etc" },
		"mount":     func(p *Pod) { p.Apps[0].Mounts = []Mount{{Source: "rel", Target: "/x"}} },
		"interactive": func(p *Pod) {
			p.Interactive = true
			p.Apps = append(p.Apps, App{Name: "b", Dir: "b", Args: []string{"x"}})
		},
	} {
		p := good()
		mod(p)
		if err := p.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestAppNames(t *testing.T) {
	for name, ok := range map[string]bool{
		"a": true, "web-1": true, "a.b_c": true, "0": true, strings.Repeat("a", 63): true,
		"": false, "A": false, "-a": false, ".a": false, "a/b": false, "a b": false, strings.Repeat("a", 64): false,
	} {
		if ValidAppName(name) != ok {
			t.Errorf("ValidAppName(%q) = %v", name, !ok)
		}
	}
}

func TestValidateNet(t *testing.T) {
	for _, tc := range []struct {
		net, ns      string
		ok, runnable bool
	}{
		{"none", "", true, true}, {"host", "", true, true}, {"default", "/run/x", true, true},
		{"default", "", true, false}, {"host", "/run/x", false, false},
	} {
		p := &Pod{Net: tc.net, NetNS: tc.ns, Apps: []App{{Name: "a", Args: []string{"x"}, Dir: "apps/a"}}}
		err := p.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("net %q netns %q: %v", tc.net, tc.ns, err)
		}
		if err == nil {
			if err := p.Runnable(); (err == nil) != tc.runnable {
				t.Errorf("net %q netns %q: runnable: %v", tc.net, tc.ns, err)
			}
		}
	}
}
