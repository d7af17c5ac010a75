// Command karman is Karman's single binary: the CLI, the pod supervisor
// (stage1) and the node agent. This package only wires commands to the
// libraries; it holds no logic of its own.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	// Fewer page faults on every karman start (see the package).
	_ "github.com/karman-project/karman/internal/prefault"
	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/stage1"
)

// exitRuntimeError is the status of every failure of karman itself, as
// opposed to the exit status of an app.
const exitRuntimeError = 254

func main() {
	if code, ok := stage1.Entrypoint(os.Args); ok {
		os.Exit(code)
	}
	if code, ok := stage0.Entrypoint(os.Args); ok {
		os.Exit(code)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	var code exitCode
	if errors.As(err, &code) {
		os.Exit(int(code))
	}
	if err != nil {
		// One line, whatever the error chain holds.
		fmt.Fprintln(errorOutput(), "karman: "+strings.ReplaceAll(err.Error(), "\n", "; "))
		os.Exit(exitRuntimeError)
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
