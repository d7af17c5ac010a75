package cri

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/agentapi/server"
	"github.com/karman-project/karman/internal/multicall"
	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/stage0/pull"
	"github.com/karman-project/karman/stage1/poddir"
	"github.com/karman-project/karman/stage1/podinit"
	"github.com/karman-project/karman/stage1/supervisor"
)

func TestMain(m *testing.M) {
	// The test binary doubles as karman-stage1 (KARMAN_STAGE1 names it):
	// the pods' supervisors and inits are re-executions of it.
	runtime.LockOSThread()
	multicall.Table{poddir.CmdRun: supervisor.Main, poddir.CmdInit: podinit.Main, poddir.CmdExec: podinit.ExecShimMain}.Dispatch(os.Args)
	if self, err := os.Executable(); err == nil {
		os.Setenv("KARMAN_STAGE1", self)
	}
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	os.Exit(m.Run())
}

// criEnv is a CRI server on a real runtime, served on a unix socket, and
// its clients.
type criEnv struct {
	dir, stateDir string
	sock          string
	rt            *stage0.Runtime
	srv           *Server
	rs            runtimeapi.RuntimeServiceClient
	is            runtimeapi.ImageServiceClient
	stop          func()
}

// newCRIEnv starts a server on the data directory dir (a new one when
// empty).
func newCRIEnv(t *testing.T, dir string) *criEnv {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	configDir := filepath.Join(dir, "etc")
	os.MkdirAll(configDir, 0o755)
	if _, err := os.Stat(filepath.Join(configDir, "policy.json")); err != nil {
		os.WriteFile(filepath.Join(configDir, "policy.json"), []byte(`{"version": 1, "default": {"type": "insecure-accept-anything"}}`+"\n"), 0o644)
	}
	rt, err := stage0.New(dir, configDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &criEnv{dir: dir, stateDir: filepath.Join(dir, "agent", "cri"), rt: rt}
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.srv, err = New(ctx, Config{Runtime: rt, StateDir: e.stateDir, Logger: log, Version: "test",
		Pull: LocalPull(pull.Local{Store: rt.Images(), ConfigDir: configDir, Log: log})})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "run", "cri.sock")
	e.sock = sock
	l, err := server.ListenUnix(sock, "CRI socket", "--cri-socket ")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, l) }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	e.rs, e.is = runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
	stopped := false
	e.stop = func() {
		if stopped {
			return
		}
		stopped = true
		conn.Close()
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("the CRI server did not stop")
		}
	}
	t.Cleanup(e.stop)
	return e
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
