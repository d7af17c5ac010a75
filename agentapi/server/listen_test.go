package server

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestListenUnixRefusesWhatIsNotAStaleSocket: only a socket nobody
// answers on is replaced; everything else at the path is refused and
// left as it was.
func TestListenUnixRefusesWhatIsNotAStaleSocket(t *testing.T) {
	dir := t.TempDir() // 0700
	listen := func(path string) error {
		l, _, err := Listen(ListenOptions{Addr: "unix://" + path})
		if err == nil {
			l.Close()
		}
		return err
	}

	file := filepath.Join(dir, "file.sock")
	os.WriteFile(file, []byte("precious"), 0o600)
	if err := listen(file); err == nil || !strings.Contains(err.Error(), "a regular file is there, not a socket") {
		t.Errorf("a regular file: %v, want a refusal", err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "precious" {
		t.Errorf("the regular file was touched: %q, %v", b, err)
	}

	sub := filepath.Join(dir, "dir.sock")
	os.Mkdir(sub, 0o700)
	os.WriteFile(filepath.Join(sub, "inside"), nil, 0o600)
	if err := listen(sub); err == nil || !strings.Contains(err.Error(), "a directory is there") {
		t.Errorf("a directory: %v, want a refusal", err)
	}
	if _, err := os.Stat(filepath.Join(sub, "inside")); err != nil {
		t.Errorf("the directory was touched: %v", err)
	}

	link := filepath.Join(dir, "link.sock")
	os.Symlink(file, link)
	if err := listen(link); err == nil || !strings.Contains(err.Error(), "a symbolic link is there") {
		t.Errorf("a symlink: %v, want a refusal", err)
	}

	// A live socket: someone answers.
	live := filepath.Join(dir, "live.sock")
	ll, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer ll.Close()
	if err := listen(live); err == nil || !strings.Contains(err.Error(), "another agent is serving it") {
		t.Errorf("a live socket: %v, want a refusal", err)
	}
	if c, err := net.Dial("unix", live); err != nil {
		t.Errorf("the live socket was removed: %v", err)
	} else {
		c.Close()
	}

	// A stale socket: nobody listens any more. Replaced.
	stale := filepath.Join(dir, "stale.sock")
	sl, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	sl.(*net.UnixListener).SetUnlinkOnClose(false)
	sl.Close()
	if err := listen(stale); err != nil {
		t.Errorf("a stale socket: %v, want it replaced", err)
	}

	for _, addr := range []string{"unix://agent.sock", "unix://./run/agent.sock", "unix://../agent.sock"} {
		if _, _, err := Listen(ListenOptions{Addr: addr}); err == nil || !strings.Contains(err.Error(), "must be absolute") {
			t.Errorf("%s: %v, want a refusal", addr, err)
		}
	}
	if _, err := os.Stat("agent.sock"); err == nil {
		t.Errorf("a relative socket was created")
	}
}

// TestListenUnixDirectory: a directory the agent creates is owner-only;
// one that group or others may write is refused.
func TestListenUnixDirectory(t *testing.T) {
	base := t.TempDir()
	path := filepath.Join(base, "new", "run", "agent.sock")
	l, _, err := Listen(ListenOptions{Addr: "unix://" + path})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	for _, d := range []string{filepath.Join(base, "new"), filepath.Join(base, "new", "run")} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("created directory %s: %v, %v; want 0700", d, fi.Mode(), err)
		}
	}
	for i, mode := range []os.FileMode{0o777, 0o770, 0o702, 0o777 | os.ModeSticky} { // the last one like /tmp
		d := filepath.Join(base, "shared", fmt.Sprint(i))
		os.MkdirAll(d, 0o700)
		os.Chmod(d, mode)
		_, _, err := Listen(ListenOptions{Addr: "unix://" + filepath.Join(d, "agent.sock")})
		if err == nil || !strings.Contains(err.Error(), "writable by group or others") {
			t.Errorf("a directory of mode %v: %v, want a refusal", mode, err)
		}
	}
	if os.Geteuid() == 0 {
		d := filepath.Join(base, "someone-elses")
		os.Mkdir(d, 0o700)
		os.Chown(d, 4242, 4242)
		_, _, err := Listen(ListenOptions{Addr: "unix://" + filepath.Join(d, "agent.sock")})
		if err == nil || !strings.Contains(err.Error(), "belongs to uid 4242") {
			t.Errorf("a directory of another user: %v, want a refusal", err)
		}
	}
}
