package stage1

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
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
	code, err := Enter(ctx, p.dir, app, argv, env, nil, out, errf, false)
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
	code, err := Enter(context.Background(), p.dir, "app", []string{"sh", "-c", "test -t 0 && test -t 1 && echo tty; tty; stat -c %u $(tty)"}, nil, nil, w, nil, true)
	w.Close()
	out := string(<-done)
	if err != nil || code != 0 || !strings.HasPrefix(out, "tty\r\n/dev/pts/0\r\n0\r\n") {
		t.Errorf("enter with a tty: %d %q %v", code, out, err)
	}
	p.signal(unix.SIGTERM)
	p.expect(p.wait(), 143)
}
