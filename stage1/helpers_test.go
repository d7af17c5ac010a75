package stage1

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/image/fetch"
	"github.com/karman-project/karman/image/rootfs"
	"github.com/karman-project/karman/image/store"
	"github.com/karman-project/karman/internal/multicall"
	"github.com/karman-project/karman/stage1/poddir"
	"github.com/karman-project/karman/stage1/podinit"
	"github.com/karman-project/karman/stage1/supervisor"
	"github.com/karman-project/karman/tests/testenv"
	"github.com/karman-project/karman/tests/testimage"
)

// launchTestEnv makes the test binary lock the pod directory it names
// and hand it to the supervisor with Launch, the way stage0 does (see
// TestLaunch): in the foreground, or with launchModeEnv=detached as a
// child, which the test binary waits for.
const (
	launchTestEnv = "KARMAN_STAGE1_TEST_LAUNCH"
	launchModeEnv = "KARMAN_STAGE1_TEST_LAUNCH_MODE"
)

func TestMain(m *testing.M) {
	// The test binary doubles as karman-stage1 (its re-executions of
	// /proc/self/exe land here) and, like it, keeps its main goroutine on
	// the main thread (see cmd/karman-stage1).
	runtime.LockOSThread()
	multicall.Table{poddir.CmdRun: supervisor.Main, poddir.CmdInit: podinit.Main, poddir.CmdExec: podinit.ExecShimMain}.Dispatch(os.Args)
	if dir := os.Getenv(launchTestEnv); dir != "" {
		os.Exit(launchLikeStage0(dir, os.Getenv(launchModeEnv) == "detached"))
	}
	// A pod init whose supervisor a test killed is re-parented to us, so
	// that the test can reap it.
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	code := m.Run()
	if images.dir != "" {
		os.RemoveAll(images.dir)
	}
	os.Exit(code)
}

// launchLikeStage0 locks dir and launches the supervisor on it.
func launchLikeStage0(dir string, detach bool) int {
	lock, err := os.Open(dir)
	if err == nil {
		err = unix.Flock(int(lock.Fd()), unix.LOCK_EX)
	}
	if err == nil {
		var cmd *exec.Cmd
		cmd, err = Launch(dir, lock, LaunchOptions{Binary: "/proc/self/exe", Debug: true, Detach: detach})
		if err == nil { // detached: the foreground returns only on failure
			lock.Close()
			err = cmd.Wait()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return ee.ExitCode()
			}
			if err == nil {
				return 0
			}
		}
	}
	fmt.Fprintln(os.Stderr, "launch test:", err)
	return poddir.ExitRuntimeError
}

// images is the busybox image store shared by the tests of this process.
var images struct {
	once   sync.Once
	dir    string
	st     *store.Store
	digest v1.Hash
	err    error
}

func busybox(t *testing.T) (*store.Store, v1.Hash) {
	t.Helper()
	testenv.RequireRoot(t, "pods need namespaces, mounts and overlayfs")
	testimage.Require(t)
	images.once.Do(func() {
		images.dir, images.err = os.MkdirTemp("", "karman-stage1-test-")
		if images.err != nil {
			return
		}
		if images.st, images.err = store.Open(filepath.Join(images.dir, "images"), nil); images.err != nil {
			return
		}
		img, err := testimage.Busybox(testimage.Options{})
		if err != nil {
			images.err = err
			return
		}
		layout := filepath.Join(images.dir, "layout")
		if _, images.err = testimage.WriteLayout(layout, "t", img); images.err != nil {
			return
		}
		ref, err := image.ParseReference("oci:" + layout + ":t")
		if err != nil {
			images.err = err
			return
		}
		got, err := fetch.Fetch(context.Background(), ref, fetch.Options{Store: images.st})
		if err != nil {
			images.err = err
			return
		}
		images.digest, images.err = v1.NewHash(got.Digest)
	})
	if images.err != nil {
		t.Fatalf("busybox image: %v", images.err)
	}
	return images.st, images.digest
}

// testPod is a pod directory built by hand, as stage0 would, and its
// supervisor run as a child of the test.
type testPod struct {
	t      *testing.T
	dir    string
	pod    *poddir.Pod
	cmd    *exec.Cmd
	out    string // the supervisor's stdout and stderr files
	err    string
	exited chan struct{} // closed when the supervisor has exited
	werr   error
	tty    *os.File // the supervisor's controlling terminal, if any
	// viaExec starts the pod the way stage0 does (Launch: the test binary
	// locks the pod and execs the supervisor), not the supervisor
	// directly; mode is startLikeStage0's.
	viaExec bool
	mode    string
}

// bothStarts runs f for a pod whose supervisor the test starts directly
// and for one started through Launch in the foreground (as karman run
// does: the launching process execs the supervisor).
func bothStarts(t *testing.T, f func(t *testing.T, viaExec bool)) {
	for _, viaExec := range []bool{false, true} {
		name := "supervisor"
		if viaExec {
			name = "launch"
		}
		t.Run(name, func(t *testing.T) { f(t, viaExec) })
	}
}

// sh is an app running a shell command.
func sh(name, script string) poddir.App {
	return poddir.App{Name: name, Args: []string{"sh", "-c", script}}
}

// newPod renders a busybox rootfs (deferred overlay) for each app and
// writes pod.json. mod may change the pod before it is saved.
func newPod(t *testing.T, mod func(*poddir.Pod), apps ...poddir.App) *testPod {
	t.Helper()
	st, d := busybox(t)
	dir := filepath.Join(t.TempDir(), "pod")
	if err := os.MkdirAll(filepath.Join(dir, "apps"), 0o755); err != nil {
		t.Fatal(err)
	}
	uuid := randomHex()
	for i := range apps {
		a := &apps[i]
		lease := "stage1-test-" + uuid + "-" + a.Name
		appDir := filepath.Join(dir, "apps", a.Name)
		r, err := rootfs.Render(context.Background(), st, d, appDir, lease, rootfs.Options{Deferred: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := rootfs.Remove(st, appDir, lease); err != nil {
				t.Errorf("remove rootfs: %v", err)
			}
		})
		a.Dir, a.Layers = "apps/"+a.Name, r.Layers
		if a.Env == nil {
			a.Env = []string{testimage.DefaultPath, "HOME=/root"}
		}
	}
	p := &poddir.Pod{UUID: uuid, Name: "test", Hostname: "testpod", Net: "none", StopTimeout: 10 * time.Second, Apps: apps}
	if mod != nil {
		mod(p)
	}
	if err := poddir.Save(dir, p); err != nil {
		t.Fatal(err)
	}
	return &testPod{t: t, dir: dir, pod: p}
}

// start locks the pod directory and starts the supervisor on it the way
// Exec does, but as a child process.
func (p *testPod) start(env ...string) {
	p.startWith(nil, env...)
}

// startTTY starts the supervisor as the session leader of the terminal
// whose slave is tty, with it as stdin, stdout and stderr.
func (p *testPod) startTTY(tty *os.File) {
	p.tty = tty
	p.startWith(tty)
}

func (p *testPod) startWith(stdin *os.File, env ...string) {
	t := p.t
	t.Helper()
	var lock *os.File
	if !p.viaExec { // else the test binary locks the directory (launchLikeStage0)
		var err error
		if lock, err = os.Open(p.dir); err != nil {
			t.Fatal(err)
		}
		defer lock.Close() // the supervisor has its own descriptor of the lock
		if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			t.Fatal(err)
		}
	}
	p.out, p.err = filepath.Join(filepath.Dir(p.dir), "stdout"), filepath.Join(filepath.Dir(p.dir), "stderr")
	stdout, err := os.Create(p.out)
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.Create(p.err)
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	if p.viaExec {
		p.cmd = exec.Command("/proc/self/exe")
		env = append(env, launchTestEnv+"="+p.dir)
	} else {
		p.cmd = exec.Command("/proc/self/exe", poddir.SupervisorArgs(p.dir, 3, true)[1:]...)
		p.cmd.Args[0] = poddir.BinaryName
		p.cmd.ExtraFiles = []*os.File{lock}
	}
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = stdin, stdout, stderr
	if p.tty != nil {
		p.cmd.Stdout, p.cmd.Stderr = p.tty, p.tty
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	}
	p.cmd.Env = append(os.Environ(), env...)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.exited = make(chan struct{})
	go func() {
		p.werr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.kill)
}

// startLikeStage0 starts the test binary as stage0 would run the pod
// (launchLikeStage0, in mode: foreground or detached), its stdout and
// stderr both in one file.
func (p *testPod) startLikeStage0(mode string) {
	t := p.t
	t.Helper()
	p.mode = mode
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), launchTestEnv+"="+p.dir, launchModeEnv+"="+mode)
	out, err := os.Create(p.dir + ".out")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.cmd, p.out, p.err = cmd, out.Name(), out.Name()
	p.exited = make(chan struct{})
	go func() {
		p.werr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.kill)
}

// running tells whether the supervisor is still running.
func (p *testPod) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// wait waits for the supervisor (a safety net of a minute only) and
// returns the pod's exit status.
func (p *testPod) wait() int {
	t := p.t
	t.Helper()
	select {
	case <-p.exited:
		var ee *exec.ExitError
		if p.werr != nil && !errors.As(p.werr, &ee) {
			t.Fatal(p.werr)
		}
		if ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(time.Minute):
		p.kill()
		t.Fatalf("pod still running after a minute; stderr:\n%s", p.stderr())
		return 0
	}
}

// run starts the pod and waits for it.
func (p *testPod) run(env ...string) int {
	p.t.Helper()
	p.start(env...)
	return p.wait()
}

// kill takes a pod that is still running down, by PID, and reaps its init
// if it came back to us.
func (p *testPod) kill() {
	if p.exited == nil || !p.running() {
		return
	}
	initPID := p.initPID()
	p.cmd.Process.Kill()
	<-p.exited
	if initPID > 0 {
		var ws unix.WaitStatus
		unix.Wait4(initPID, &ws, 0, nil)
	}
}

// initPID is the pod init's host PID from state/init.pid, or 0.
func (p *testPod) initPID() int {
	b, err := os.ReadFile(filepath.Join(p.dir, poddir.InitPID))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

func (p *testPod) stdout() string { return readFile(p.t, p.out) }
func (p *testPod) stderr() string { return readFile(p.t, p.err) }
func (p *testPod) log(app string) string {
	return string(poddir.LogText([]byte(readFile(p.t, filepath.Join(p.dir, poddir.LogsDir, app+".log")))))
}

// waitFor polls until cond holds; a minute is only a safety net.
func (p *testPod) waitFor(what string, cond func() bool) {
	t := p.t
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(5 * time.Millisecond) {
		if !p.running() {
			t.Fatalf("waiting for %s: the supervisor exited; stderr:\n%s", what, p.stderr())
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: gave up; stderr:\n%s", what, p.stderr())
		}
	}
}

// waitLog waits until the app's log holds s.
func (p *testPod) waitLog(app, s string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("%q in the log of %s", s, app), func() bool { return strings.Contains(p.log(app), s) })
}

// waitStarted waits until every app has started.
func (p *testPod) waitStarted() {
	p.t.Helper()
	p.waitFor("the pod to start", func() bool {
		_, err := os.Stat(filepath.Join(p.dir, poddir.Started))
		return err == nil
	})
}

func (p *testPod) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

func (p *testPod) appStatus() []poddir.AppStatus { return poddir.ReadAppStatus(p.dir, p.pod) }

// expect checks the pod's exit status, showing its stderr if it differs.
func (p *testPod) expect(got, want int) {
	p.t.Helper()
	if got != want {
		p.t.Fatalf("pod exited %d, want %d; stderr:\n%s", got, want, p.stderr())
	}
}

func fmtSscan(s string, v *uint64) (int, error) { return fmt.Sscanf(s, "0x%x", v) }

func itoa(n int) string { return strconv.Itoa(n) }

func randomHex() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
