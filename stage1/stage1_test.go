package stage1

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestExec runs a pod the way stage0 does: a process locks the pod
// directory and execs the supervisor (or, with Supervise, becomes it),
// which keeps the lock (and the PID) until the pod has ended.
func TestExec(t *testing.T) {
	t.Parallel()
	inEachStage0Mode(t, "echo ready; exec sleep 1000", func(t *testing.T, p *testPod) {
		if pid := strings.TrimSpace(readFile(t, p.dir+"/"+SupervisorPID)); pid != itoa(p.cmd.Process.Pid) {
			t.Errorf("supervisor pid %s, want the exec'ing process %d", pid, p.cmd.Process.Pid)
		}
		if held, err := locked(p.dir); err != nil || !held {
			t.Errorf("the pod lock is not held while the pod runs (%v)", err)
		}
		if err := Stop(p.dir, false); err != nil {
			t.Fatal(err)
		}
		p.expect(p.wait(), 143)
		if held, err := locked(p.dir); err != nil || held {
			t.Errorf("the pod lock is still held (%v)", err)
		}
	})
}

// stage0Modes are the ways stage0 hands a pod to stage1, for
// startLikeStage0: Exec, Exec with the init started beforehand
// (StartInit), and Supervise.
var stage0Modes = []string{"exec", "exec, init started first", "supervise"}

// stage0ModeEnv is the environment that makes startLikeStage0 start a
// pod in mode.
func stage0ModeEnv(mode string) []string {
	switch mode {
	case "supervise":
		return []string{superviseTestEnv + "=1"}
	case "exec, init started first":
		return []string{earlyInitTestEnv + "=none"}
	}
	return nil
}

// inEachStage0Mode runs f, in parallel subtests, on a pod of one app
// "app" running script, started in each of stage0Modes, once the app has
// written "ready".
func inEachStage0Mode(t *testing.T, script string, f func(t *testing.T, p *testPod)) {
	for _, mode := range stage0Modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			p := newPod(t, nil, sh("app", script))
			p.startLikeStage0(stage0ModeEnv(mode)...)
			p.waitLog("app", "ready")
			f(t, p)
		})
	}
}

// TestNoLeakedDescriptors: apps get stdin, stdout and stderr only; the
// pod lock stays in the supervisor.
func TestNoLeakedDescriptors(t *testing.T) {
	t.Parallel()
	got := lines(t, nil, App{Name: "app", Args: []string{"ls", "/proc/self/fd"}})
	if strings.Join(got, " ") != "0 1 2 3" { // 3 is ls's own directory
		t.Errorf("app descriptors: %q", got)
	}
}

func TestEntrypoint(t *testing.T) {
	for _, args := range [][]string{nil, {"karman"}, {"karman", "run"}, {"karman", "__stage1-nope"}} {
		if _, ok := Entrypoint(args); ok {
			t.Errorf("Entrypoint(%q) handled", args)
		}
	}
	if code, ok := Entrypoint([]string{"karman", cmdRun}); !ok || code != ExitRuntimeError {
		t.Errorf("supervisor without arguments: %d, %v", code, ok)
	}
}

func TestSupervisorArgs(t *testing.T) {
	for _, tc := range []struct {
		opts ExecOptions
		fd   int
	}{{ExecOptions{}, 3}, {ExecOptions{Debug: true}, 7}} {
		args := supervisorArgs("/pods/x", tc.fd, tc.opts)
		f, err := parseSupervisorArgs(args[2:])
		if err != nil || !reflect.DeepEqual(f, supervisorFlags{podDir: "/pods/x", lockFD: tc.fd, debug: tc.opts.Debug}) {
			t.Errorf("%q parsed as %+v, %v", args, f, err)
		}
	}
	f, err := parseSupervisorArgs([]string{"--init=42,9", "/pods/x"})
	if err != nil || f.initPID != 42 || f.initFD != 9 || f.booted {
		t.Errorf("--init=42,9 parsed as %+v, %v", f, err)
	}
	f, err = parseSupervisorArgs([]string{"--init=42,9", "--booted=5,6,10,11", "/pods/x"})
	if err != nil || !f.booted || !reflect.DeepEqual(f.logFDs, []int{5, 6, 10, 11}) {
		t.Errorf("--booted=5,6,10,11 parsed as %+v, %v", f, err)
	}
	f, err = parseSupervisorArgs([]string{"--init=42,9", "--booted=5,-", "--resumed", "/pods/x"})
	if err != nil || !f.booted || !f.resumed || !reflect.DeepEqual(f.logFDs, []int{5, -1}) {
		t.Errorf("--booted=5,- --resumed parsed as %+v, %v", f, err)
	}
	f, err = parseSupervisorArgs([]string{"--init=42,9", "--booted=", "/pods/x"})
	if err != nil || !f.booted || len(f.logFDs) != 0 {
		t.Errorf("--booted= parsed as %+v, %v", f, err)
	}
	for _, bad := range [][]string{{}, {"--lock-fd=x", "/p"}, {"--lock-fd=1", "/p"}, {"--nope", "/p"}, {"/p", "/q"},
		{"--init=42", "/p"}, {"--init=x,9", "/p"}, {"--init=42,2", "/p"}, {"--init=1,9", "/p"},
		{"--booted=5,6", "/p"}, {"--init=42,9", "--booted=5,x", "/p"}, {"--init=42,9", "--booted=2", "/p"},
		{"--init=42,9", "--resumed", "/p"}} {
		if _, err := parseSupervisorArgs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestValidate(t *testing.T) {
	good := func() *Pod {
		return &Pod{Net: "none", Apps: []App{{Name: "web", Dir: "apps/web", Args: []string{"sh"}}}}
	}
	if err := good().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Pod){
		"net":       func(p *Pod) { p.Net = "default" },
		"name":      func(p *Pod) { p.Apps[0].Name = "../x" },
		"duplicate": func(p *Pod) { p.Apps = append(p.Apps, p.Apps[0]) },
		"no-args":   func(p *Pod) { p.Apps[0].Args = nil },
		"dir":       func(p *Pod) { p.Apps[0].Dir = "../other" },
		"abs-dir":   func(p *Pod) { p.Apps[0].Dir = "/etc" },
		"mount":     func(p *Pod) { p.Apps[0].Mounts = []Mount{{Source: "rel", Target: "/x"}} },
		"interactive": func(p *Pod) {
			p.Interactive = true
			p.Apps = append(p.Apps, App{Name: "b", Dir: "b", Args: []string{"x"}})
		},
	} {
		p := good()
		mod(p)
		if err := p.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestAppNames(t *testing.T) {
	for name, ok := range map[string]bool{
		"a": true, "web-1": true, "a.b_c": true, "0": true, strings.Repeat("a", 63): true,
		"": false, "A": false, "-a": false, ".a": false, "a/b": false, "a b": false, strings.Repeat("a", 64): false,
	} {
		if validAppName(name) != ok {
			t.Errorf("validAppName(%q) = %v", name, !ok)
		}
	}
}

func TestPodExitCode(t *testing.T) {
	for _, tc := range []struct {
		codes []int
		want  int
	}{{[]int{0}, 0}, {[]int{7}, 7}, {[]int{0, 0, 0}, 0}, {[]int{0, 3, 5}, 3}, {[]int{137, 0}, 137}} {
		var apps []*appProc
		for _, c := range tc.codes {
			apps = append(apps, &appProc{code: c, exited: true})
		}
		if got := podExitCode(apps); got != tc.want {
			t.Errorf("%v: %d, want %d", tc.codes, got, tc.want)
		}
	}
}

func TestSupervisorFailsCleanly(t *testing.T) {
	t.Parallel()
	p := newPod(t, func(p *Pod) { p.Apps[0].Mounts = []Mount{{Source: "/no/such/source", Target: "/x"}} }, sh("app", "true"))
	p.expect(p.run(), ExitRuntimeError)
	lines := strings.Split(strings.TrimSpace(p.stderr()), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "karman: ") || !strings.Contains(last, "/no/such/source") {
		t.Errorf("stderr = %q", p.stderr())
	}
	if got := strings.TrimSpace(readFile(t, p.dir+"/"+ExitFile)); got != "254" {
		t.Errorf("state/exit = %q", got)
	}
}

// TestEarlyInitMismatch: an init started before its pod existed
// (StartInit) whose namespaces are not the ones the pod asks for is
// refused by Exec, which kills it: nothing of it is left running.
func TestEarlyInitMismatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, early string
		mod         func(*Pod)
	}{
		{"host for a net=none pod", "host", nil},
		{"another network namespace", "none", func(p *Pod) { p.Net, p.NetNS = "test", testNetNS(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPod(t, tc.mod, sh("app", "echo ran"))
			cmd := exec.Command("/proc/self/exe")
			cmd.Env = append(os.Environ(), execTestEnv+"="+p.dir, earlyInitTestEnv+"="+tc.early)
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != ExitRuntimeError {
				t.Fatalf("exec with a mismatched init: %v: %s", err, out)
			}
			if !strings.Contains(string(out), "started beforehand") || strings.Contains(string(out), "ran") || strings.Contains(string(out), "still runs") {
				t.Errorf("output: %s", out)
			}
			_, pid, ok := strings.Cut(string(out), earlyInitPIDLabel)
			pid, _, _ = strings.Cut(pid, "\n")
			if !ok || pid == "" {
				t.Fatalf("no init pid in %s", out)
			}
			if b, err := os.ReadFile("/proc/" + pid + "/cmdline"); err == nil && strings.Contains(string(b), cmdInit) {
				t.Errorf("the refused init %s still runs", pid)
			}
		})
	}
}

// TestEarlyInitNetNS: stage0 makes the networks of a pod whose init it
// started beforehand in the init's own network namespace, bound on the
// pod's NetNS file; the apps run in that namespace.
func TestEarlyInitNetNS(t *testing.T) {
	t.Parallel()
	ns := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(ns, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(ns, unix.MNT_DETACH) })
	p := newPod(t, func(p *Pod) { p.Net, p.NetNS = "test", ns }, sh("app", "readlink /proc/self/ns/net; exec sleep 1000"))
	p.startLikeStage0(earlyInitTestEnv + "=bind:" + ns)
	defer func() {
		if err := Stop(p.dir, true); err != nil {
			t.Error(err)
		}
		p.expect(p.wait(), 137)
	}()
	p.waitFor("the app's output", func() bool { return strings.Contains(p.log("app"), "net:") })
	var st unix.Stat_t
	if err := unix.Stat(ns, &st); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(p.log("app")), fmt.Sprintf("net:[%d]", st.Ino); got != want {
		t.Errorf("the app's network namespace is %s, want the init's, bound on NetNS: %s", got, want)
	}
}

// TestEarlyOutputKept: with Exec the apps may run, and write, before the
// supervisor has started its copies of their output: what they wrote
// waits in the pipes and reaches both the log and the supervisor's stdout
// in full, however much more than a pipe buffer it is.
func TestEarlyOutputKept(t *testing.T) {
	t.Parallel()
	bothStarts(t, func(t *testing.T, viaExec bool) {
		t.Parallel()
		const n = 300 << 10
		p := newPod(t, nil, sh("app", "head -c 307200 /dev/zero | tr '\\0' x"))
		p.viaExec = viaExec
		p.expect(p.run(), 0)
		want := strings.Repeat("x", n)
		if got := p.log("app"); got != want {
			t.Errorf("log: %d bytes, want %d x", len(got), n)
		}
		if got := p.stdout(); got != want {
			t.Errorf("stdout: %d bytes, want %d x", len(got), n)
		}
	})
}

// TestAdoptInitRefusesAStranger: the supervisor takes over only an init
// that is its child (the one Exec forked before the exec).
func TestAdoptInitRefusesAStranger(t *testing.T) {
	mine, theirs, err := initSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer theirs.Close()
	s := &supervisor{initPID: os.Getppid(), initFD: mine}
	if _, err := s.adoptInit(); err == nil || !strings.Contains(err.Error(), "not a child") {
		t.Fatalf("adopting our parent: %v", err)
	}
	s.conn.Close()
}

// TestOutputPipeModes: an app's stdout and stderr are blocking, as
// programs expect, while the supervisor's ends of those pipes are
// non-blocking, so that its tees wait in the runtime's poller instead of
// holding a thread each, in every way a pod starts (the read ends cross
// the supervisor's exec in "exec" modes).
func TestOutputPipeModes(t *testing.T) {
	t.Parallel()
	inEachStage0Mode(t, "grep -h flags /proc/self/fdinfo/1 /proc/self/fdinfo/2; echo ready; exec sleep 1000", func(t *testing.T, p *testPod) {
		var appFlags []string
		for _, l := range strings.Split(p.log("app"), "\n") {
			if v, ok := strings.CutPrefix(l, "flags:"); ok {
				appFlags = append(appFlags, strings.TrimSpace(v))
			}
		}
		if len(appFlags) != 2 {
			t.Fatalf("the app's fdinfo flags of stdout and stderr: %q", p.log("app"))
		}
		for i, f := range appFlags {
			if fdFlags(t, f)&unix.O_NONBLOCK != 0 {
				t.Errorf("the app's fd %d is non-blocking (flags %s)", i+1, f)
			}
		}
		sup := p.cmd.Process.Pid
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", sup))
		if err != nil {
			t.Fatal(err)
		}
		readEnds := 0
		for _, e := range ents {
			link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", sup, e.Name()))
			if !strings.HasPrefix(link, "pipe:") {
				continue
			}
			info := readFile(t, fmt.Sprintf("/proc/%d/fdinfo/%s", sup, e.Name()))
			_, rest, _ := strings.Cut(info, "flags:")
			fl := fdFlags(t, strings.Fields(rest)[0])
			if fl&unix.O_ACCMODE != unix.O_RDONLY {
				continue
			}
			readEnds++
			if fl&unix.O_NONBLOCK == 0 {
				t.Errorf("the supervisor's fd %s, %s, is blocking", e.Name(), link)
			}
		}
		if readEnds != 2 {
			t.Errorf("the supervisor holds %d read ends of pipes, want the app's stdout and stderr", readEnds)
		}
		if err := Stop(p.dir, false); err != nil {
			t.Fatal(err)
		}
		p.expect(p.wait(), 143)
	})
}

func fdFlags(t *testing.T, octal string) int {
	t.Helper()
	v, err := strconv.ParseInt(octal, 8, 64)
	if err != nil {
		t.Fatalf("fdinfo flags %q: %v", octal, err)
	}
	return int(v)
}

func TestMainThreadBound(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"karman"}, true},
		{[]string{"karman", "run"}, true},
		{[]string{"karman", "agent"}, true},
		{[]string{"karman", cmdInit}, true},
		{[]string{"karman", cmdExec}, true},
		{[]string{"karman", cmdRun, "/pods/x"}, true},
		{[]string{"karman", cmdRun, "--init=7,4", "--booted=5,6", "/pods/x"}, false},
	} {
		if got := mainThreadBound(tc.args); got != tc.want {
			t.Errorf("mainThreadBound(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}
