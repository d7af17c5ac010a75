package stage1

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/karman-project/karman/stage1/poddir"
	"golang.org/x/sys/unix"
)

func TestExitCode(t *testing.T) {
	t.Parallel()
	p := newPod(t, nil, sh("app", "exit 7"))
	p.expect(p.run(), 7)
	if got := strings.TrimSpace(readFile(t, filepath.Join(p.dir, poddir.ExitFile))); got != "7" {
		t.Errorf("state/exit = %q, want 7", got)
	}
	for _, f := range []string{poddir.Finished, poddir.Started, poddir.InitPID, poddir.SupervisorPID} {
		if _, err := os.Stat(filepath.Join(p.dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	for _, f := range []string{poddir.CtlSocket, poddir.NotifySocket} {
		if _, err := os.Lstat(filepath.Join(p.dir, f)); err == nil {
			t.Errorf("%s left behind", f)
		}
	}
	st := p.appStatus()[0]
	if !st.Exited || st.ExitCode != 7 || st.PID <= 0 || st.Started.IsZero() || st.Finished.Before(st.Started) {
		t.Errorf("app status = %+v", st)
	}
}

func TestExecErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		code int
		path string
	}{
		{"absolute-missing", []string{"/no/such/cmd"}, poddir.ExitNotFound, "/no/such/cmd"},
		{"path-missing", []string{"nosuchcmd", "x"}, poddir.ExitNotFound, "nosuchcmd"},
		{"not-executable", []string{"/etc/passwd"}, poddir.ExitCannotExec, "/etc/passwd"},
		{"directory", []string{"/etc"}, poddir.ExitCannotExec, "/etc"},
		{"relative-missing", []string{"./nope"}, poddir.ExitNotFound, "/nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newPod(t, nil, poddir.App{Name: "web", Args: tc.args})
			p.expect(p.run(), tc.code)
			want := "karman: app web: " + tc.path + ": "
			lines := strings.Split(strings.TrimSpace(p.stdout()+p.stderr()), "\n")
			found := 0
			for _, l := range lines {
				if strings.HasPrefix(l, want) {
					found++
				}
			}
			if found != 1 {
				t.Errorf("want one line starting %q on stderr; got:\n%s", want, p.stderr())
			}
			if !strings.Contains(p.log("web"), want) {
				t.Errorf("log lacks the error: %q", p.log("web"))
			}
			st := p.appStatus()[0]
			if !st.Exited || st.ExitCode != tc.code || st.Reason == "" || st.PID != 0 {
				t.Errorf("app status = %+v", st)
			}
		})
	}
}

func TestSignalExit(t *testing.T) {
	t.Parallel()
	p := newPod(t, nil, sh("app", "kill -9 $$"))
	p.expect(p.run(), 137)
	if st := p.appStatus()[0]; st.Signal != "SIGKILL" || st.ExitCode != 137 {
		t.Errorf("app status = %+v", st)
	}
}

// TestMultiApp: the pod's status is that of the first app in pod order
// that did not exit 0, whatever the order in which they ended.
func TestMultiApp(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		apps []poddir.App
		want int
	}{
		{"all-zero", []poddir.App{sh("a", "exit 0"), sh("b", "true")}, 0},
		// c exits first, b waits for c to be gone, a for b.
		{"pod-order", []poddir.App{
			sh("a", "while [ ! -e /shared/b ]; do sleep 0.01; done; exit 0"),
			sh("b", "while [ ! -e /shared/c ]; do sleep 0.01; done; touch /shared/b; exit 3"),
			sh("c", "touch /shared/c; exit 5"),
		}, 3},
		{"signal", []poddir.App{sh("a", "exit 0"), sh("b", "kill -9 $$"), sh("c", "exit 2")}, 137},
		{"not-found", []poddir.App{sh("a", "exit 0"), {Name: "b", Args: []string{"nosuch"}}}, 127},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			shared := t.TempDir()
			for i := range tc.apps {
				tc.apps[i].Mounts = []poddir.Mount{{Source: shared, Target: "/shared"}}
			}
			p := newPod(t, nil, tc.apps...)
			p.expect(p.run(), tc.want)
			for _, st := range p.appStatus() {
				if !st.Exited {
					t.Errorf("app status = %+v", st)
				}
			}
		})
	}
}

// TestExecErrno: failures only execve itself finds (a script whose
// interpreter is missing, a file that is no program) map to 127 and 126.
func TestExecErrno(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, content string
		code          int
	}{
		{"no-interpreter", "#!/no/such/interpreter\n", poddir.ExitNotFound},
		{"not-a-program", "\x7fELF garbage", poddir.ExitCannotExec},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newPod(t, nil, poddir.App{Name: "app", Args: []string{"/script"}})
			if err := os.WriteFile(filepath.Join(p.dir, "apps/app/upper/script"), []byte(tc.content), 0o755); err != nil {
				t.Fatal(err)
			}
			p.expect(p.run(), tc.code)
			if !strings.Contains(p.stderr(), "karman: app app: /script: ") {
				t.Errorf("stderr = %q", p.stderr())
			}
		})
	}
}

// TestExitRecordedAfterOutput: an app's exit is recorded once its output
// is in its log, all of it, including what a process it left behind
// wrote before it let go of the app's stdout (as the CRI expects of a
// container's log when its exit is reported).
func TestExitRecordedAfterOutput(t *testing.T) {
	t.Parallel()
	p := newPod(t, nil, sh("keep", "exec sleep 1000"),
		sh("app", "(sleep 0.1; echo late-line) & echo early-line"))
	p.start()
	var st poddir.AppStatus
	p.waitFor("the app's exit", func() bool {
		for _, s := range p.appStatus() {
			if s.Name == "app" && s.Exited {
				st = s
				return true
			}
		}
		return false
	})
	if log := p.log("app"); st.ExitCode != 0 || !strings.Contains(log, "early-line\n") || !strings.Contains(log, "late-line\n") {
		t.Errorf("when its exit was recorded (%+v), the app's log held %q", st, log)
	}
	p.signal(unix.SIGTERM)
	p.expect(p.wait(), 143)
}
