package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/karman-project/karman/tests/testenv"
)

func TestNginxPort(t *testing.T) {
	dir := t.TempDir()
	for conf, want := range map[string]int{
		"server {\n    listen       12003;\n    server_name  localhost;\n}\n": 12003,
		"server {\n    # listen 1;\n    server_name  localhost;\n}\n":         80,
		"server {\n  listen 8080;\n  listen 9090;\n}\n":                       8080,
	} {
		p := filepath.Join(dir, "default.conf")
		if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := nginxPort(p); err != nil || got != want {
			t.Errorf("nginxPort(%q) = %d, %v; want %d", conf, got, err, want)
		}
	}
	if got, err := nginxPort(filepath.Join(dir, "none")); err != nil || got != 80 {
		t.Errorf("nginxPort of a missing file = %d, %v; want 80", got, err)
	}
}

func TestIpcs(t *testing.T) {
	if _, err := os.Stat("/proc/sysvipc/shm"); err != nil {
		testenv.SkipAllowed(t, testenv.KernelLacks, "no /proc/sysvipc/shm (System V IPC)")
	}
	var b strings.Builder
	if err := ipcs(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "------ Shared Memory Segments --------") || !strings.Contains(b.String(), "shmid") {
		t.Errorf("ipcs printed:\n%s", b.String())
	}
}
