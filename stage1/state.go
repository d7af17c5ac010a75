package stage1

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
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

// appName is what an app name may look like: it names files and
// directories in the pod.
var appName = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,62})$`)

// Validate checks what stage1 relies on beyond LoadPod: app names usable
// as file names and unique, a command for every app, a known network
// mode, and a single app for an interactive pod.
func (p *Pod) Validate() error {
	switch p.Net {
	case "", "none", "host":
	default:
		return fmt.Errorf("network %q: stage1 runs pods with net none or host", p.Net)
	}
	if p.Interactive && len(p.Apps) != 1 {
		return errors.New("an interactive pod has exactly one app")
	}
	seen := map[string]bool{}
	for _, a := range p.Apps {
		if !appName.MatchString(a.Name) {
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
			if !strings.HasPrefix(m.Source, "/") || !strings.HasPrefix(m.Target, "/") {
				return fmt.Errorf("app %s: mount %s:%s needs absolute paths", a.Name, m.Source, m.Target)
			}
		}
	}
	return nil
}
