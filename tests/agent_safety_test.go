package tests

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/karman-project/karman/tests/testenv"
)

// agentRefusal runs `karman agent` with args, which must refuse to start:
// it fails the test if the agent is still running after a minute (it
// started serving), and returns its exit code and output.
func agentRefusal(t *testing.T, dir string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	full := append([]string{"--dir", dir, "--config-dir", filepath.Join(dir, "etc"), "agent", "--cri-socket="}, args...)
	cmd := exec.CommandContext(ctx, testenv.Binary(t), full...)
	cmd.Dir = t.TempDir() // where a relative socket would land
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("karman agent %v did not refuse to start: it ran until killed\n%s", args, out)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("karman agent %v: %v, want a refusal\n%s", args, err, out)
	}
	return ee.ExitCode(), string(out)
}

// TestAgentSocketAndDirectoryRules: the agent replaces only a stale
// socket, refuses anything else at its --listen path, a relative path and a
// directory others can write; a second agent on the same --dir is refused
// while the first runs.
func TestAgentSocketAndDirectoryRules(t *testing.T) {
	e := newAgentEnv(t)
	e.start(t)

	// A second agent on the same --dir, even on another socket or with
	// another --state-dir, is refused, and leaves no socket behind.
	other := filepath.Join(e.dir, "other.sock")
	state := filepath.Join(t.TempDir(), "state")
	for _, extra := range [][]string{nil, {"--state-dir", state}} {
		code, out := agentRefusal(t, e.dir, append([]string{"--listen", "unix://" + other}, extra...)...)
		if code != 254 || !strings.Contains(out, "data directory (--dir) "+e.dir+" is in use by another agent") {
			t.Errorf("a second agent on --dir %s %v: exit %d, %s; want 254 naming the directory", e.dir, extra, code, out)
		}
		if _, err := os.Lstat(other); err == nil {
			t.Errorf("the refused agent left its socket %s", other)
		}
	}
	if _, err := os.Lstat(state); err == nil {
		t.Errorf("the refused agent created its --state-dir %s", state)
	}
	// The first one serves on, and a second on its socket is refused too.
	if _, err := e.c.Health(ctxT(t, 30*time.Second)); err != nil {
		t.Errorf("the first agent after the refusals: %v", err)
	}
	code, out := agentRefusal(t, t.TempDir(), "--listen", "unix://"+e.sock)
	if code != 254 || !strings.Contains(out, "another agent is serving it") {
		t.Errorf("a second agent on a live socket: exit %d, %s", code, out)
	}

	// Killed, the agent leaves a stale socket, which the next one replaces.
	e.kill(t)
	if fi, err := os.Lstat(e.sock); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("after SIGKILL: %v, %v; want the stale socket", fi, err)
	}
	e.start(t)
	e.kill(t)

	// Anything but a socket at the path is refused and left alone.
	dir := t.TempDir()
	file := filepath.Join(e.dir, "file.sock")
	os.WriteFile(file, []byte("keep me"), 0o600)
	sub := filepath.Join(e.dir, "dir.sock")
	os.Mkdir(sub, 0o700)
	shared := filepath.Join(t.TempDir(), "shared")
	os.Mkdir(shared, 0o700)
	os.Chmod(shared, 0o777|os.ModeSticky) // as /tmp
	for _, tt := range []struct{ listen, want string }{
		{"unix://" + file, "a regular file is there, not a socket"},
		{"unix://" + sub, "a directory is there, not a socket"},
		{"unix://agent.sock", "must be absolute"},
		{"unix://" + filepath.Join(shared, "agent.sock"), "writable by group or others"},
	} {
		code, out := agentRefusal(t, dir, "--listen", tt.listen)
		if code != 254 || !strings.Contains(out, tt.want) {
			t.Errorf("--listen %s: exit %d, %s; want 254 and %q", tt.listen, code, out, tt.want)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me" {
		t.Errorf("the regular file at the socket path: %q, %v", b, err)
	}
	if fi, err := os.Stat(sub); err != nil || !fi.IsDir() {
		t.Errorf("the directory at the socket path: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(shared, "agent.sock")); err == nil {
		t.Errorf("a socket was made in a directory others can write")
	}
}
