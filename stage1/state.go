package stage1

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// writeJSONAtomic replaces path with v as JSON.
func writeJSONAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'))
}

// readJSON reads the JSON file path into v.
func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// validAppName tells whether name may name an app: it names files and
// directories in the pod. Lower-case letters, digits, '.', '_' and '-',
// starting with a letter or digit, at most 63 bytes. (No regexp: package
// initialisation runs in every karman process, the pod init included.)
func validAppName(name string) bool {
	if name == "" || len(name) > 63 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// Validate checks what stage1 relies on, for LoadPod: at least one app,
// app names usable as file names and unique, a command for every app, no
// network namespace of its own for a pod on the host's network, and a
// single app for an interactive pod. (A prepared pod's networks are made
// when it is run: runnable says whether they are.)
func (p *Pod) Validate() error {
	if len(p.Apps) == 0 {
		return errors.New("pod manifest lists no apps")
	}
	if p.Net == "host" && p.NetNS != "" {
		return errors.New("a pod on the host's network has no network namespace of its own")
	}
	if p.Interactive && len(p.Apps) != 1 {
		return errors.New("an interactive pod has exactly one app")
	}
	seen := map[string]bool{}
	for _, a := range p.Apps {
		if !validAppName(a.Name) {
			return fmt.Errorf("app name %q: use lower-case letters, digits, '.', '_' and '-'", a.Name)
		}
		if seen[a.Name] {
			return fmt.Errorf("two apps named %q", a.Name)
		}
		seen[a.Name] = true
		if len(a.Args) == 0 || a.Args[0] == "" {
			return fmt.Errorf("app %s has no command", a.Name)
		}
		if a.Dir == "" || strings.HasPrefix(a.Dir, "/") || strings.Contains("/"+a.Dir+"/", "/../") {
			return fmt.Errorf("app %s: dir %q must be relative to the pod directory", a.Name, a.Dir)
		}
		for _, m := range a.Mounts {
			if err := m.Check(); err != nil {
				return fmt.Errorf("app %s: %w", a.Name, err)
			}
		}
	}
	return nil
}

// runnable refuses to run a pod whose networks stage0 has not made (a
// prepared pod not run through stage0): stage1 runs pods with net none,
// host, or in the network namespace stage0 made (NetNS).
func (p *Pod) runnable() error {
	switch {
	case p.Net == "", p.Net == "none", p.Net == "host", p.NetNS != "":
		return nil
	}
	return fmt.Errorf("pod %s: network %q is not made: stage1 runs pods with net none, host, or in a network namespace stage0 made; run it with `karman run-prepared`", p.UUID, p.Net)
}
