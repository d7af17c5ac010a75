package stage1

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/karman-project/karman/stage1/poddir"
	"golang.org/x/sys/unix"
)

// lines runs a one-app pod and returns its output lines; it must exit 0.
func lines(t *testing.T, mod func(*poddir.Pod), app poddir.App) []string {
	t.Helper()
	p := newPod(t, mod, app)
	p.expect(p.run(), 0)
	return strings.Split(strings.TrimRight(p.stdout(), "\n"), "\n")
}

func TestLogs(t *testing.T) {
	t.Parallel()
	p := newPod(t, nil, sh("a", "echo out1; echo err1 >&2; echo out2; echo err2 >&2"), sh("b", "echo b-out; echo b-err >&2"))
	p.expect(p.run(), 0)
	out, errs := p.stdout(), withoutLogRecords(p.stderr())
	inOrder := func(s string, want ...string) bool {
		i := 0
		for _, l := range strings.Split(s, "\n") {
			if i < len(want) && l == want[i] {
				i++
			}
		}
		return i == len(want)
	}
	if !inOrder(out, "out1", "out2") || !inOrder(out, "b-out") || strings.Contains(out, "err") {
		t.Errorf("supervisor stdout = %q", out)
	}
	if !inOrder(errs, "err1", "err2") || !inOrder(errs, "b-err") || strings.Contains(errs, "out") {
		t.Errorf("supervisor stderr = %q", errs)
	}
	// Both streams in the log, each in order.
	la := p.log("a")
	for _, want := range []string{"out1\n", "out2\n", "err1\n", "err2\n"} {
		if !strings.Contains(la, want) {
			t.Errorf("log of a lacks %q: %q", want, la)
		}
	}
	if strings.Index(la, "out1") > strings.Index(la, "out2") || strings.Index(la, "err1") > strings.Index(la, "err2") {
		t.Errorf("log of a out of order: %q", la)
	}
	if lb := p.log("b"); lb != "b-out\nb-err\n" && lb != "b-err\nb-out\n" {
		t.Errorf("log of b = %q", lb)
	}
}

// withoutLogRecords drops karman's own (debug) log lines.
func withoutLogRecords(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "time=") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestStdinIsDevNull(t *testing.T) {
	t.Parallel()
	got := lines(t, nil, sh("app", "readlink /proc/self/fd/0; cat; echo eof"))
	if strings.Join(got, ",") != "/dev/null,eof" {
		t.Errorf("got %q", got)
	}
}

func TestInteractive(t *testing.T) {
	t.Parallel()
	bothStarts(t, func(t *testing.T, viaExec bool) {
		p := newPod(t, func(p *poddir.Pod) { p.Interactive = true }, sh("app", "read x; echo got $x; echo to-stderr >&2"))
		p.viaExec = viaExec
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		p.startWith(r)
		w.WriteString("hello\n")
		w.Close()
		p.expect(p.wait(), 0)
		if got := p.stdout(); got != "got hello\n" {
			t.Errorf("stdout = %q", got)
		}
		if !strings.Contains(p.stderr(), "to-stderr") {
			t.Errorf("stderr = %q", p.stderr())
		}
	})
}

func TestHostnameAndEtc(t *testing.T) {
	t.Parallel()
	got := lines(t, func(p *poddir.Pod) {
		p.Hostname = "web-1"
		p.ResolvConf = "nameserver 192.0.2.53\n"
		p.Hosts = "127.0.0.1 localhost\n192.0.2.7 web-1\n"
	}, sh("app", "hostname; cat /etc/hostname /etc/resolv.conf /etc/hosts"))
	want := []string{"web-1", "web-1", "nameserver 192.0.2.53", "127.0.0.1 localhost", "192.0.2.7 web-1"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestEtcSymlinkStaysInside: an image whose /etc/hosts points at a host
// path gets its own file; the host's is untouched.
func TestEtcSymlinkStaysInside(t *testing.T) {
	t.Parallel()
	hostFile := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(hostFile, []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := newPod(t, nil, sh("app", "cat /etc/hosts"))
	rootfsDir := filepath.Join(p.dir, "apps/app/upper/etc")
	if err := os.MkdirAll(rootfsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(hostFile, filepath.Join(rootfsDir, "hosts")); err != nil {
		t.Fatal(err)
	}
	p.expect(p.run(), 0)
	if b, _ := os.ReadFile(hostFile); string(b) != "host\n" {
		t.Errorf("host file written through the image's symlink: %q", b)
	}
	if !strings.Contains(p.stdout(), "localhost") {
		t.Errorf("/etc/hosts = %q", p.stdout())
	}
}

func TestProcAndPID1(t *testing.T) {
	t.Parallel()
	got := lines(t, nil, sh("app", "tr '\\0' ' ' < /proc/1/cmdline; echo; grep -c . /proc/self/status >/dev/null && echo proc-ok; ls /proc | grep -c '^[0-9]'"))
	if len(got) != 3 || !strings.Contains(got[0], poddir.CmdInit) || got[1] != "proc-ok" {
		t.Errorf("got %q", got)
	}
	// Only the init, the shell and ls (and grep) in the pod's PID namespace.
	if n := got[2]; n != "3" && n != "4" {
		t.Errorf("%s processes visible in the pod", n)
	}
}

func TestNetNone(t *testing.T) {
	t.Parallel()
	got := lines(t, func(p *poddir.Pod) { p.Net = "none" }, sh("app", "ls /sys/class/net; cat /sys/class/net/lo/flags; grep -c : /proc/net/dev"))
	if len(got) != 3 || got[0] != "lo" || got[2] != "1" {
		t.Fatalf("got %q, want only lo", got)
	}
	var flags uint64
	if _, err := fmtSscan(got[1], &flags); err != nil || flags&unix.IFF_UP == 0 {
		t.Errorf("lo flags %q: not up", got[1])
	}
}

// TestNetHost: a pod with net host is in the host's network namespace
// (compared by namespace identity: other tests add and remove host
// interfaces meanwhile, so counting them would race).
func TestNetHost(t *testing.T) {
	t.Parallel()
	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	got := lines(t, func(p *poddir.Pod) { p.Net = "host" }, sh("app", "readlink /proc/self/ns/net"))
	if len(got) != 1 || got[0] != host {
		t.Errorf("the pod's network namespace is %q, the host's %q", got, host)
	}
}

func TestHostInvisible(t *testing.T) {
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "host-marker")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var p *testPod
	p = newPod(t, nil, sh("app", "test -e "+marker+" && echo MARKER-VISIBLE; ls / ; cat /proc/self/mountinfo"))
	p.expect(p.run(), 0)
	out := p.stdout()
	if strings.Contains(out, "MARKER-VISIBLE") {
		t.Errorf("the app sees %s", marker)
	}
	if strings.Contains(out, "podroot") || strings.Contains(out, " /apps") {
		t.Errorf("the app sees the pod root:\n%s", out)
	}
}

func TestDevSysMounts(t *testing.T) {
	t.Parallel()
	got := lines(t, nil, sh("app", `
		for d in null zero full random urandom tty; do test -c /dev/$d || echo "no /dev/$d"; done
		echo x > /dev/null || echo "null not writable"
		test "$(head -c 5 /dev/zero | wc -c)" = 5 || echo "zero broken"
		test "$(readlink /dev/ptmx)" = pts/ptmx || echo "no ptmx link"
		test -c /dev/pts/ptmx || echo "no devpts"
		test "$(readlink /dev/fd)" = /proc/self/fd || echo "no /dev/fd"
		test -L /dev/stdin -a -L /dev/stdout -a -L /dev/stderr || echo "no stdio links"
		touch /dev/shm/x || echo "shm not writable"
		touch /sys/x 2>/dev/null && echo "sys writable"
		grep -q " /sys ro," /proc/self/mountinfo || echo "sys not ro"
		grep -q " /proc rw,nosuid,nodev,noexec" /proc/self/mountinfo || echo "proc flags"
		echo done`))
	if strings.Join(got, "|") != "done" {
		t.Errorf("got %q", got)
	}
}

func TestBindMounts(t *testing.T) {
	t.Parallel()
	rw, ro := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(ro, "f"), []byte("ro-content\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "single")
	if err := os.WriteFile(file, []byte("single\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	app := sh("app", "cat /data/ro/f /etc/single; touch /data/ro/x 2>/dev/null && echo ro-writable; echo hi > /data/rw/out")
	app.Mounts = []poddir.Mount{
		{Source: ro, Target: "/data/ro", ReadOnly: true},
		{Source: rw, Target: "/data/rw"},
		{Source: file, Target: "/etc/single", ReadOnly: true},
	}
	got := lines(t, nil, app)
	if strings.Join(got, "|") != "ro-content|single" {
		t.Errorf("got %q", got)
	}
	if b, _ := os.ReadFile(filepath.Join(rw, "out")); string(b) != "hi\n" {
		t.Errorf("write through the rw mount: %q", b)
	}
}

func TestUserWorkdirUmask(t *testing.T) {
	t.Parallel()
	app := sh("app", "id -u; id -g; id -G; pwd; umask; touch /tmp/f; stat -c %a /tmp/f")
	app.UID, app.GID, app.GIDs = 1000, 1000, []uint32{65534}
	app.WorkingDir = "/tmp/work/dir"
	got := lines(t, nil, app)
	want := []string{"1000", "1000", "1000 65534", "/tmp/work/dir", "0022", "644"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestInteractiveTerminal: the app of an interactive pod gets the
// supervisor's terminal as its foreground process group (so ^C reaches
// it, not the pod), and the supervisor takes the terminal back after.
func TestInteractiveTerminal(t *testing.T) {
	t.Parallel()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	mfd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		t.Fatal(errno)
	}
	slave := os.NewFile(sfd, "pty")
	defer slave.Close()
	p := newPod(t, func(p *poddir.Pod) { p.Interactive = true }, sh("app",
		`test -t 0 && echo tty; pg=$(cut -d' ' -f5 /proc/self/stat); fg=$(cut -d' ' -f8 /proc/self/stat); test "$pg" = "$fg" && echo foreground`))
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(master) // until EIO: everyone closed the slave
		done <- b
	}()
	p.startTTY(slave)
	slave.Close()
	p.expect(p.wait(), 0)
	out := string(<-done)
	got := strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), "\n")
	if !slices.Contains(got, "tty") || !slices.Contains(got, "foreground") {
		t.Errorf("terminal output %q", out)
	}
	// The supervisor (a session leader here, so its group is its PID)
	// took the terminal back before it exited.
	if want := "took the terminal back\" pod=pod foreground=" + itoa(p.cmd.Process.Pid); !strings.Contains(out, want) {
		t.Errorf("terminal output %q lacks %q", out, want)
	}
	if st := p.appStatus()[0]; !st.Exited || st.ExitCode != 0 {
		t.Errorf("app status %+v", st)
	}
}
