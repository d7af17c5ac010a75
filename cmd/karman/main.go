// Command karman is Karman's single binary: the CLI, the pod supervisor
// (stage1) and the node agent. This package only wires commands to the
// libraries; it holds no logic of its own.
package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"

	"github.com/karman-project/karman/internal/multicall"
	"github.com/karman-project/karman/stage0"
)

// exitRuntimeError is the status of every failure of karman itself, as
// opposed to the exit status of an app.
const exitRuntimeError = multicall.ExitRuntimeError

func main() {
	multicall.Table{stage0.TeardownEntrypoint: stage0.TeardownMain}.Dispatch(os.Args)
	// The network code makes a pod's network namespace on a thread that
	// it then lets the runtime end; the main thread, which the runtime
	// cannot end, must never be that thread.
	runtime.LockOSThread()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	var code exitCode
	if errors.As(err, &code) {
		os.Exit(int(code))
	}
	if err != nil {
		// One line, whatever the error chain holds.
		os.Exit(multicall.Fail(errorOutput(), err))
	}
}

// errorFDEnv names the descriptor on which a karman that another karman
// runs (the lean one's fetches, lean.go) reports its failure, so that
// the caller can say it as its own one line.
const errorFDEnv = "KARMAN_ERROR_FD"

// errorOutput is where the failure of this command goes: stderr, or the
// descriptor that errorFDEnv names.
func errorOutput() *os.File {
	if v := os.Getenv(errorFDEnv); v != "" {
		if fd, err := strconv.Atoi(v); err == nil && fd > 2 {
			return os.NewFile(uintptr(fd), "karman-errors")
		}
	}
	return os.Stderr
}
