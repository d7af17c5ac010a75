package tests

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/tests/testenv"
)

// karmanIn is karman with stdin as the command's standard input (a pipe).
func karmanIn(t *testing.T, dir, stdin string, args ...string) testenv.Result {
	t.Helper()
	acceptAnything(t, filepath.Join(dir, "etc"))
	ctx, cancel := context.WithTimeout(context.Background(), testenv.RunTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Binary(t), append([]string{"--dir", dir, "--config-dir", filepath.Join(dir, "etc")}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &stdout, &stderr
	cmd.WaitDelay = 10 * time.Second
	cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("karman %s did not finish within %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), testenv.RunTimeout, &stdout, &stderr)
	}
	return testenv.Result{Stdout: stdout.String(), Stderr: stderr.String(), Code: cmd.ProcessState.ExitCode()}
}

// streamPod starts a pod of no apps and returns its UUID; it is stopped
// at the end of the test.
func (e *podEnv) streamPod(t *testing.T) string {
	t.Helper()
	uuid := strings.TrimSpace(mustSucceed(t, e.run(t, "--no-apps")).Stdout)
	t.Cleanup(func() {
		karman(t, e.dir, "stop", "--force", uuid)
		karman(t, e.dir, "status", "--wait=30s", uuid)
	})
	return uuid
}

// TestEnterStdio: enter relays the caller's stdin, stdout and stderr and
// returns the command's status; a killed command's status is 128+N.
func TestEnterStdio(t *testing.T) {
	e := newPodEnv(t)
	_, uuid := e.startPod(t, e.image, "--exec", "/bin/sleep", "--", "1000")
	r := karmanIn(t, e.dir, "hello\nworld\n", "enter", uuid, "/bin/sh", "-c", "tr a-z A-Z; echo oops >&2; exit 3")
	if r.Code != 3 || r.Stdout != "HELLO\nWORLD\n" || r.Stderr != "oops\n" {
		t.Errorf("enter with stdin: %s", r)
	}
	if r := karman(t, e.dir, "enter", uuid, "/bin/sh", "-c", "kill -9 $$"); r.Code != 137 {
		t.Errorf("enter, killed: %s", r)
	}
	mustSucceed(t, karman(t, e.dir, "stop", "--force", uuid))
}

// TestPortForwardLoopback: `karman port-forward` reaches a server that listens
// only on the loopback of a pod (no port mapping, no pod network).
func TestPortForwardLoopback(t *testing.T) {
	e := newPodEnv(t)
	uuid := e.streamPod(t)
	mustSucceed(t, karman(t, e.dir, "app", "add", uuid, e.image, "--name", "web", "--exec", "/bin/sh", "--", "-c",
		"mkdir -p /www && echo hello-through-the-forward > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"))
	mustSucceed(t, karman(t, e.dir, "app", "start", uuid, "--app", "web"))
	cmd := exec.Command(testenv.Binary(t), "--dir", e.dir, "--config-dir", filepath.Join(e.dir, "etc"), "port-forward", uuid, "0:8080")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill() // ours, by PID
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	// "forwarding 127.0.0.1:PORT -> 8080"
	f := strings.Fields(line)
	if err != nil || len(f) != 4 || f[0] != "forwarding" || f[3] != "8080" || !strings.HasPrefix(f[1], "127.0.0.1:") {
		t.Fatalf("port-forward said %q (%v); stderr %s", line, err, &stderr)
	}
	// The server may still be starting: the forward's connection is
	// refused and closed until it listens.
	var last string
	for range 200 {
		c, err := net.DialTimeout("tcp", f[1], 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
		b, _ := io.ReadAll(c)
		c.Close()
		if last = string(b); strings.HasPrefix(last, "HTTP/1.") && strings.Contains(last, "hello-through-the-forward\n") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("through the forward: %q; stderr %s", last, &stderr)
}

// TestAppAttach: attach streams an app's output and feeds its stdin;
// with --stdin-once the end of the session's stdin closes the app's, and
// a shell reading it exits. An app with a terminal is relayed too.
func TestAppAttach(t *testing.T) {
	e := newPodEnv(t)
	uuid := e.streamPod(t)
	app := func(args ...string) testenv.Result {
		t.Helper()
		return mustSucceed(t, karman(t, e.dir, append([]string{"app"}, args...)...))
	}
	app("add", "--stdin-once", uuid, e.image, "--name", "sh", "--exec", "/bin/sh")
	app("start", uuid, "--app", "sh")
	r := karmanIn(t, e.dir, "echo hello-$((1+1)); echo to-stderr >&2\n", "app", "attach", uuid, "--app", "sh")
	if r.Code != 0 || r.Stdout != "hello-2\n" || r.Stderr != "to-stderr\n" {
		t.Errorf("attach: %s", r)
	}
	if a := e.waitApp(t, uuid, "sh", stage0.AppExited); a.ExitCode == nil || *a.ExitCode != 0 {
		t.Errorf("the shell after its stdin closed: %+v", a)
	}
	// Its output is in its log all the same.
	if logs := mustSucceed(t, karman(t, e.dir, "logs", "--app", "sh", uuid)); !strings.Contains(logs.Stdout, "hello-2\n") {
		t.Errorf("log: %q", logs.Stdout)
	}
	// An app that has ended cannot be attached to.
	if r := karmanIn(t, e.dir, "", "app", "attach", uuid, "--app", "sh"); r.Code == 0 || !strings.Contains(r.Stderr, "not running") {
		t.Errorf("attach to an ended app: %s", r)
	}

	app("add", "--tty", uuid, e.image, "--name", "tty", "--exec", "/bin/sh")
	app("start", uuid, "--app", "tty")
	r = karmanIn(t, e.dir, "test -t 0 && test -t 1 && echo on-a-tty-$((2+2)); exit 7\n", "app", "attach", uuid, "--app", "tty")
	if r.Code != 0 || !strings.Contains(r.Stdout, "on-a-tty-4\r\n") {
		t.Errorf("attach to a terminal: %s", r)
	}
	if a := e.waitApp(t, uuid, "tty", stage0.AppExited); a.ExitCode == nil || *a.ExitCode != 7 {
		t.Errorf("the terminal's shell: %+v", a)
	}
}
