package exe

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTrusted(t *testing.T) {
	dir := t.TempDir()
	file := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return p
	}
	good := file("good", 0o755)
	if abs, err := Trusted(good); err != nil || abs != good {
		t.Errorf("Trusted(%s) = %q, %v", good, abs, err)
	}
	for name, tc := range map[string]struct {
		path string
		want string
	}{
		"world-writable": {file("ww", 0o757), "could be replaced by another user"},
		"group-writable": {file("gw", 0o775), "could be replaced by another user"},
		"not executable": {file("plain", 0o644), "is not an executable file"},
		"directory":      {dir, "is not an executable file"},
		"missing":        {filepath.Join(dir, "none"), "no such file"},
	} {
		if _, err := Trusted(tc.path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Trusted(%s) = %v, want an error saying %q", name, tc.path, err, tc.want)
		}
	}
}

func TestBeside(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := Beside(filepath.Base(self)); !ok || p != self {
		t.Errorf("Beside(%s) = %q, %v; want the test binary", filepath.Base(self), p, ok)
	}
	if p, ok := Beside("karman-no-such-program"); ok {
		t.Errorf("Beside found %s", p)
	}
}
