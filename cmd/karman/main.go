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
		fmt.Fprintln(os.Stderr, "karman: "+strings.ReplaceAll(err.Error(), "\n", "; "))
		os.Exit(exitRuntimeError)
	}
}
