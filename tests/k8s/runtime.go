package k8s

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Runtime is a CRI runtime served by tests/conformance/serve.sh, the code
// path of scripts/conformance.sh: the loopback registry of signed
// look-alikes, and karman's agent (registries.conf, the test key trusted)
// or Debian's containerd.
type Runtime struct {
	// Kind is "karman" or "containerd".
	Kind string
	// Socket is the CRI socket; Registry the loopback registry's
	// HOST:PORT; WorkDir the script's private directory.
	Socket, Registry, WorkDir string
	// DataDir and ConfigDir are the karman agent's --dir and --config-dir;
	// Key the test signing key the look-alikes are signed with.
	DataDir, ConfigDir, Key string
	// CRITools holds crictl and critest.
	CRITools string
	// PID is the runtime's process (the agent's, after RestartAgent the
	// new one's).
	PID int

	bin     string
	script  *exec.Cmd
	stdin   io.WriteCloser
	done    chan struct{}
	out     bytes.Buffer
	agent   *exec.Cmd // the agent RestartAgent started
	agentCh chan struct{}
}

// StartRuntime runs tests/conformance/serve.sh KIND from the checkout root
// with bin (make build's bin/) and tmp for its work directory, and waits
// (at most 5 minutes) until it is up.
func StartRuntime(ctx context.Context, root, bin, tmp, kind string) (*Runtime, error) {
	cmd := exec.Command("bash", filepath.Join(root, "tests/conformance/serve.sh"), kind)
	cmd.Env = append(os.Environ(), "BIN="+bin, "TMPDIR="+tmp)
	cmd.Dir = root
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	r := &Runtime{Kind: kind, bin: bin, script: cmd, stdin: stdin, done: make(chan struct{})}
	cmd.Stderr = &r.out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	vars := map[string]string{}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if line == "READY" {
				ready <- nil
				break
			}
			if k, v, ok := strings.Cut(line, "="); ok {
				vars[k] = v
			}
		}
		ready <- errors.New("serve.sh exited before READY")
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { _ = cmd.Wait(); close(r.done) }()
	select {
	case err = <-ready:
	case <-time.After(5 * time.Minute):
		err = errors.New("not up after 5 minutes")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		r.Stop()
		return nil, fmt.Errorf("k8s: %s runtime: %w:\n%s", kind, err, r.out.String())
	}
	r.Socket, r.Registry, r.WorkDir = vars["CRI_SOCK"], vars["REG"], vars["W"]
	r.DataDir, r.ConfigDir, r.Key, r.CRITools = vars["KARMAN_DATA"], vars["KARMAN_CONFIG"], vars["KEY"], vars["CRI_TOOLS"]
	r.PID, _ = strconv.Atoi(vars["CRI_RUNTIME_PID"])
	return r, nil
}

// Log is what the script wrote on its standard error.
func (r *Runtime) Log() string { return r.out.String() }

// Client is a CRI client of the runtime; close the connection when done.
func (r *Runtime) Client() (runtimeapi.RuntimeServiceClient, *grpc.ClientConn, error) {
	conn, err := grpc.NewClient("unix://"+r.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, err
	}
	return runtimeapi.NewRuntimeServiceClient(conn), conn, nil
}

// KillAgent kills the karman agent with SIGKILL and waits until it is
// gone; RestartAgent then starts it again with the same command line and
// environment.
func (r *Runtime) KillAgent() (restart func(context.Context) error, err error) {
	if r.Kind != "karman" {
		return nil, fmt.Errorf("k8s: KillAgent: the runtime is %s", r.Kind)
	}
	argv, err := nulList(fmt.Sprintf("/proc/%d/cmdline", r.PID))
	if err != nil {
		return nil, err
	}
	env, err := nulList(fmt.Sprintf("/proc/%d/environ", r.PID))
	if err != nil {
		return nil, err
	}
	if err := syscall.Kill(r.PID, syscall.SIGKILL); err != nil {
		return nil, err
	}
	if r.agent != nil && r.agent.Process.Pid == r.PID {
		<-r.agentCh
	} else {
		for range 300 {
			if gone(r.PID) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return func(ctx context.Context) error { return r.restart(ctx, argv, env) }, nil
}

func (r *Runtime) restart(ctx context.Context, argv, env []string) error {
	f, err := os.OpenFile(filepath.Join(r.WorkDir, "karman", "agent.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	r.agent, r.agentCh, r.PID = cmd, make(chan struct{}), cmd.Process.Pid
	ch := r.agentCh
	go func() { _ = cmd.Wait(); close(ch) }()
	rs, conn, err := r.Client()
	if err != nil {
		return err
	}
	defer conn.Close()
	for range 300 {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = rs.Version(cctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ch:
			return fmt.Errorf("k8s: the restarted agent exited; see %s", filepath.Join(r.WorkDir, "karman", "agent.log"))
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("k8s: the restarted agent does not answer on %s after 30 s: %w", r.Socket, err)
}

// RemoveAll stops and removes every sandbox the runtime has, over the CRI.
func (r *Runtime) RemoveAll(ctx context.Context) error {
	rs, conn, err := r.Client()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	l, err := rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range l.Items {
		if _, err := rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: s.Id}); err != nil {
			errs = append(errs, err)
		}
		if _, err := rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: s.Id}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Stop removes every sandbox, stops an agent RestartAgent started, then
// closes the script's input: it stops the runtime and the registry by
// PID and removes its work directory.
func (r *Runtime) Stop() error {
	var errs []error
	if r.Socket != "" && !gone(r.PID) {
		if err := r.RemoveAll(context.Background()); err != nil {
			errs = append(errs, fmt.Errorf("k8s: removing the sandboxes: %w", err))
		}
	}
	if r.agent != nil {
		select {
		case <-r.agentCh:
		default:
			_ = r.agent.Process.Signal(syscall.SIGTERM)
			select {
			case <-r.agentCh:
			case <-time.After(15 * time.Second):
				_ = r.agent.Process.Kill()
				<-r.agentCh
			}
		}
		if r.DataDir != "" {
			// What serve.sh's cleanup does for the agent it started.
			_ = exec.Command(filepath.Join(r.bin, "karman-full"), "--dir", r.DataDir, "gc", "--grace-period=0").Run()
		}
	}
	r.stdin.Close()
	select {
	case <-r.done:
	case <-time.After(90 * time.Second):
		_ = r.script.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			_ = r.script.Process.Kill()
			<-r.done
		}
		errs = append(errs, errors.New("k8s: serve.sh did not stop when its input closed"))
	}
	return errors.Join(errs...)
}

// gone reports whether pid no longer runs (absent or a zombie).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 {
		return s[i+2] == 'Z' || s[i+2] == 'X'
	}
	return false
}

func nulList(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), nil
}
