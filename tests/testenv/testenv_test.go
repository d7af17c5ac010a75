package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRequireRoot(t *testing.T) {
	ran := false
	t.Run("gate", func(t *testing.T) {
		RequireRoot(t, "testing the gate")
		ran = true
	})
	if (os.Geteuid() == 0) != ran {
		t.Errorf("euid %d, subtest ran: %v", os.Geteuid(), ran)
	}
}

func TestModuleRoot(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := ModuleRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mod), "module github.com/karman-project/karman\n") {
		t.Errorf("%s/go.mod is not karman's:\n%s", root, mod)
	}
	if rel, _ := filepath.Rel(root, wd); rel != filepath.Join("tests", "testenv") {
		t.Errorf("root %s, wd %s", root, wd)
	}
	if _, err := ModuleRoot("/"); err == nil {
		t.Error("found a go.mod in /")
	}
}

// TestRun uses busybox as a stand-in binary via $KARMAN_BINARY, so it does not
// need cmd/karman.
func TestRun(t *testing.T) {
	const bb = "/bin/busybox"
	RequireFile(t, bb, "apt-get install busybox-static")
	t.Setenv(BinaryEnv, bb)
	if got := Binary(t); got != bb {
		t.Errorf("Binary = %q, want %q", got, bb)
	}
	res := Run(t, []string{"KARMAN_TESTENV=hello"}, "sh", "-c", `echo "out $KARMAN_TESTENV"; echo err >&2; exit 3`)
	if res.Stdout != "out hello\n" || res.Stderr != "err\n" || res.Code != 3 {
		t.Errorf("Run: %s", res)
	}
	res = Run(t, nil, "true")
	if res.Code != 0 || res.Stdout != "" {
		t.Errorf("Run true: %s", res)
	}
	res = Run(t, nil, "sh", "-c", "kill -KILL $$")
	if res.Code != -1 {
		t.Errorf("killed: %s", res)
	}
}
