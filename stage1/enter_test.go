package stage1

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/karman-project/karman/stage1/poddir"
	"golang.org/x/sys/unix"
)

// enter runs Enter with files for stdout and stderr and returns the
// status and both outputs.
func enter(t *testing.T, ctx context.Context, p *testPod, app string, env []string, argv ...string) (int, string, string, error) {
	t.Helper()
	dir := t.TempDir()
	out, err := os.Create(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	errf, err := os.Create(filepath.Join(dir, "err"))
	if err != nil {
		t.Fatal(err)
	}
	defer errf.Close()
	code, err := Enter(ctx, p.dir, EnterOptions{App: app, Args: argv, Env: env, Stdout: out, Stderr: errf})
	return code, readFile(t, out.Name()), readFile(t, errf.Name()), err
}

func TestEnter(t *testing.T) {
	t.Parallel()
	app := sh("app", "echo $$ > /tmp/app.pid; echo ready; exec sleep 1000")
	app.UID, app.Env = 1000, []string{"PATH=/bin", "APPVAR=app"}
	p := newPod(t, func(p *poddir.Pod) { p.Hostname = "entered" }, app, sh("other", "exec sleep 1000"))
	p.start()
	p.waitLog("app", "ready")
	ctx := context.Background()

	code, out, errs, err := enter(t, ctx, p, "app", nil, "cat", "/etc/hostname")
	if err != nil || code != 0 || out != "entered\n" {
		t.Errorf("cat /etc/hostname: %d %q %q %v", code, out, errs, err)
	}
	// Same namespaces and root as the app, its user and environment.
	code, out, _, err = enter(t, ctx, p, "app", nil, "sh", "-c",
		"id -u; echo $APPVAR; hostname; cat /tmp/app.pid; test -e /proc/$(cat /tmp/app.pid) && echo same-pidns; for ns in net mnt uts ipc cgroup; do readlink /proc/$(cat /tmp/app.pid)/ns/$ns; readlink /proc/self/ns/$ns; done | uniq | wc -l")
	if want := "1000\napp\nentered\n"; err != nil || code != 0 || !strings.HasPrefix(out, want) || !strings.Contains(out, "same-pidns\n5\n") {
		t.Errorf("enter: %d %q %v", code, out, err)
	}
	code, out, _, err = enter(t, ctx, p, "app", []string{"X=1"}, "/bin/sh", "-c", "echo $X$APPVAR; exit 3")
	if err != nil || code != 3 || out != "1\n" {
		t.Errorf("exit 3: %d %q %v", code, out, err)
	}
	code, _, errs, err = enter(t, ctx, p, "app", nil, "nosuchcmd")
	if err != nil || code != poddir.ExitNotFound || !strings.HasPrefix(errs, "karman: enter app app: nosuchcmd: ") {
		t.Errorf("not found: %d %q %v", code, errs, err)
	}
	code, _, _, err = enter(t, ctx, p, "app", nil, "/etc/passwd")
	if err != nil || code != poddir.ExitCannotExec {
		t.Errorf("not executable: %d %v", code, err)
	}
	code, _, _, err = enter(t, ctx, p, "app", nil, "sh", "-c", "kill -9 $$")
	if err != nil || code != 137 {
		t.Errorf("killed: %d %v", code, err)
	}
	// The other app's root is another one.
	code, out, _, err = enter(t, ctx, p, "other", nil, "sh", "-c", "test -e /tmp/app.pid && echo shared; id -u")
	if err != nil || code != 0 || out != "0\n" {
		t.Errorf("other app: %d %q %v", code, out, err)
	}
	if _, _, _, err := enter(t, ctx, p, "nosuchapp", nil, "true"); err == nil {
		t.Errorf("enter into a missing app succeeded")
	}

	// Cancelling the context kills the command.
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, _, _, err := enter(t, cctx, p, "app", nil, "sleep", "1000"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled enter: %v", err)
	}
	p.signal(unix.SIGTERM)
	p.expect(p.wait(), 143)
	if _, _, _, err := enter(t, ctx, p, "app", nil, "true"); !errors.Is(err, ErrNotRunning) {
		t.Errorf("enter into an ended pod: %v", err)
	}
}

func TestEnterTTY(t *testing.T) {
	t.Parallel()
	p := newPod(t, nil, sh("app", "echo ready; exec sleep 1000"))
	p.start()
	p.waitLog("app", "ready")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		done <- b
	}()
	code, err := Enter(context.Background(), p.dir, EnterOptions{App: "app", Args: []string{"sh", "-c", "test -t 0 && test -t 1 && echo tty; tty; stat -c %u $(tty)"}, Stdout: w, TTY: true})
	w.Close()
	out := string(<-done)
	if err != nil || code != 0 || !strings.HasPrefix(out, "tty\r\n/dev/pts/0\r\n0\r\n") {
		t.Errorf("enter with a tty: %d %q %v", code, out, err)
	}
	p.signal(unix.SIGTERM)
	p.expect(p.wait(), 143)
}

// TestEnterStreams: streams that are not files are relayed through pipes,
// both ways, and a cancelled command takes its process group with it.
func TestEnterStreams(t *testing.T) {
	t.Parallel()
	p := newPod(t, nil, sh("app", "echo ready; exec sleep 1000"))
	p.start()
	p.waitLog("app", "ready")
	ctx := context.Background()
	var out, errs bytes.Buffer
	code, err := Enter(ctx, p.dir, EnterOptions{App: "app", Args: []string{"sh", "-c", "tr a-z A-Z; echo oops >&2; exit 7"},
		Stdin: strings.NewReader("hello\n"), Stdout: &out, Stderr: &errs})
	if err != nil || code != 7 || out.String() != "HELLO\n" || errs.String() != "oops\n" {
		t.Errorf("relayed streams: %d %q %q %v", code, out.String(), errs.String(), err)
	}
	// Much output, more than a pipe holds, all of it copied.
	out.Reset()
	code, err = Enter(ctx, p.dir, EnterOptions{App: "app", Args: []string{"sh", "-c", "yes 0123456789 | head -n 100000"}, Stdout: &out})
	if err != nil || code != 0 || out.Len() != 1100000 {
		t.Errorf("large output: %d %d bytes %v", code, out.Len(), err)
	}
	// A deadline kills the command and what it started.
	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	out.Reset()
	_, err = Enter(dctx, p.dir, EnterOptions{App: "app", Args: []string{"sh", "-c", "sleep 1000 & echo $!; wait"}, Stdout: &out})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("enter past its deadline: %v", err)
	}
	if child := strings.TrimSpace(out.String()); child != "" {
		for i := 0; ; i++ {
			code, _, _, err := enter(t, ctx, p, "app", nil, "test", "-e", "/proc/"+child)
			if err == nil && code != 0 {
				break
			}
			if i == 100 {
				t.Errorf("the background child %s of a killed enter lives on", child)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	} else {
		t.Errorf("no PID of the background child")
	}
	p.signal(unix.SIGTERM)
	p.expect(p.wait(), 143)
}

// TestEnterTTYResize: a terminal relayed to a reader and a writer, with
// its size set from Resize.
func TestEnterTTYResize(t *testing.T) {
	t.Parallel()
	p := newPod(t, nil, sh("app", "echo ready; exec sleep 1000"))
	p.start()
	p.waitLog("app", "ready")
	resize := make(chan TermSize, 1)
	resize <- TermSize{Rows: 33, Cols: 111}
	inR, inW := io.Pipe()
	var out lockedBuffer
	done := make(chan error, 1)
	var code int
	go func() {
		var err error
		code, err = Enter(context.Background(), p.dir, EnterOptions{App: "app", Args: []string{"sh"}, Stdin: inR, Stdout: &out, TTY: true, Resize: resize})
		done <- err
	}()
	// The size applies before the shell reads its first line, which
	// waits for it.
	for i := 0; !strings.Contains(out.String(), "#"); i++ {
		if i == 200 {
			t.Fatalf("no prompt: %q", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	io.WriteString(inW, "stty size; test -t 0 && echo is-a-tty; exit 5\n")
	if err := <-done; err != nil || code != 5 || !strings.Contains(out.String(), "33 111\r\n") || !strings.Contains(out.String(), "is-a-tty\r\n") {
		t.Errorf("tty: %d %q %v", code, out.String(), err)
	}
	inW.Close()
	p.signal(unix.SIGTERM)
	p.expect(p.wait(), 143)
}

// lockedBuffer is a bytes.Buffer written by one goroutine and read by
// another.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
