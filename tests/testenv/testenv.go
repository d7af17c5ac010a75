package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// BinaryEnv names the environment variable that points end-to-end tests at a
// prebuilt karman binary instead of building ./cmd/karman.
const BinaryEnv = "KARMAN_BINARY"

// RunTimeout bounds every Run.
const RunTimeout = 2 * time.Minute

var (
	buildOnce sync.Once
	buildDir  string
	buildPath string
	buildErr  error
)

// Binary returns the karman binary for end-to-end tests: $KARMAN_BINARY if
// set (made absolute), otherwise ./cmd/karman of this module built with
// `go build` once per test process into a temporary directory (see
// CleanupBinary). A build failure fails t (and every later caller).
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(BinaryEnv); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatalf("testenv: $%s=%q: %v", BinaryEnv, p, err)
		}
		if _, err := os.Stat(abs); err != nil {
			t.Fatalf("testenv: $%s: %v", BinaryEnv, err)
		}
		return abs
	}
	buildOnce.Do(func() { buildPath, buildErr = build() })
	if buildErr != nil {
		t.Fatalf("testenv: building karman: %v", buildErr)
	}
	return buildPath
}

// CleanupBinary removes the binary Binary built, if any. Calling it (e.g.
// from TestMain after m.Run) is optional; it only saves a temporary
// directory.
func CleanupBinary() error {
	if buildDir == "" {
		return nil
	}
	return os.RemoveAll(buildDir)
}

func build() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root, err := ModuleRoot(wd)
	if err != nil {
		return "", err
	}
	goTool, err := goCommand()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "karman-e2e-bin-")
	if err != nil {
		return "", err
	}
	buildDir = dir
	out := filepath.Join(dir, "karman")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// As `make` builds them: the lean karman and, beside it, the complete
	// one and the lean stage1 binary, which it execs.
	for _, b := range []struct{ name, pkg, tags string }{
		{"karman", "karman", "lean"}, {"karman-full", "karman", ""}, {"karman-stage1", "karman-stage1", ""},
	} {
		cmd := exec.CommandContext(ctx, goTool, "build", "-tags="+b.tags, "-o", filepath.Join(dir, b.name), "./cmd/"+b.pkg)
		// As `make` builds them: the pod init needs a binary without cgo.
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Dir = root
		var output bytes.Buffer
		cmd.Stdout, cmd.Stderr = &output, &output
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("%s build -tags=%s ./cmd/%s (in %s): %v\n%s", goTool, b.tags, b.pkg, root, err, output.String())
		}
	}
	return out, nil
}

// goCommand finds the go tool; `go test` puts $GOROOT/bin first in PATH.
func goCommand() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no go command in PATH or $GOROOT/bin; set $" + BinaryEnv + " to a prebuilt karman")
}

// ModuleRoot walks up from dir to the nearest directory with a go.mod.
func ModuleRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; {
		if fi, err := os.Stat(filepath.Join(d, "go.mod")); err == nil && !fi.IsDir() {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod in %s or its parents", dir)
		}
		d = parent
	}
}

// Result is the outcome of Run.
type Result struct {
	Stdout, Stderr string
	// Code is the exit status, or -1 if the binary was killed by a signal.
	Code int
}

// String formats r for failure messages.
func (r Result) String() string {
	return fmt.Sprintf("exit code %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
}

// Run runs Binary(t) with args and the current environment plus env
// ("KEY=value", later entries win) and returns its output and exit code. A
// non-zero exit is not a failure; not finishing within RunTimeout, or failing
// to start, fails t.
func Run(t testing.TB, env []string, args ...string) Result {
	t.Helper()
	bin := Binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), RunTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// If karman leaves a process holding its stdout/stderr, stop waiting
	// for the pipes soon after karman itself exited.
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String(), Code: cmd.ProcessState.ExitCode()}
	if ctx.Err() != nil {
		t.Fatalf("testenv: %s %s did not finish within %v\n%s", bin, strings.Join(args, " "), RunTimeout, res)
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		t.Logf("testenv: %s %s exited, but something it started kept its stdout/stderr open", bin, strings.Join(args, " "))
		return res
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("testenv: running %s %s: %v\n%s", bin, strings.Join(args, " "), err, res)
	}
	return res
}
