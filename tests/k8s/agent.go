package k8s

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// KillAgent kills the node's karman agent with SIGKILL, waits until it is
// gone and returns a function that starts it again with the same command
// line and environment (its output appended to AgentLog), updates
// AgentPID and waits until it answers on its CRI socket. The restarted
// agent is stopped in t.Cleanup, before the node's own cleanup, once
// every sandbox it has is stopped and removed over the CRI (what the
// node's script does for the agent it started).
func (n *Node) KillAgent(t testing.TB) (restart func(context.Context) error) {
	t.Helper()
	argv, err := nulList(fmt.Sprintf("/proc/%d/cmdline", n.AgentPID))
	if err != nil {
		t.Fatal(err)
	}
	env, err := nulList(fmt.Sprintf("/proc/%d/environ", n.AgentPID))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(n.AgentPID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the agent (PID %d): %v", n.AgentPID, err)
	}
	for range 500 {
		if gone(n.AgentPID) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !gone(n.AgentPID) {
		t.Fatalf("the agent (PID %d) still runs 5 s after SIGKILL", n.AgentPID)
	}
	return func(ctx context.Context) error { return n.restartAgent(ctx, t, argv, env) }
}

func (n *Node) restartAgent(ctx context.Context, t testing.TB, argv, env []string) error {
	f, err := os.OpenFile(n.AgentLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return err
	}
	n.AgentPID = cmd.Process.Pid
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	rs := n.Runtime(t)
	t.Cleanup(func() {
		if err := RemoveSandboxes(context.Background(), rs); err != nil {
			t.Errorf("removing the restarted agent's sandboxes: %v", err)
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("the restarted agent (PID %d) did not stop on SIGTERM; killed", cmd.Process.Pid)
		}
	})
	for range 300 {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = rs.Version(cctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("the restarted agent exited; its log: %s", n.AgentLog)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("the restarted agent does not answer on %s after 30 s: %w", n.Sock, err)
}

// RemoveSandboxes stops and removes every sandbox of a runtime over the
// CRI, as a node's teardown does.
func RemoveSandboxes(ctx context.Context, rs runtimeapi.RuntimeServiceClient) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	l, err := rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return err
	}
	for _, s := range l.Items {
		if _, err := rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: s.Id}); err != nil {
			return fmt.Errorf("stop sandbox %s: %w", s.Id, err)
		}
		if _, err := rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: s.Id}); err != nil {
			return fmt.Errorf("remove sandbox %s: %w", s.Id, err)
		}
	}
	return nil
}

// gone reports whether pid no longer runs (absent, or a zombie its
// parent has not reaped).
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
