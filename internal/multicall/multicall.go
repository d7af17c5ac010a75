package multicall

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// ExitRuntimeError is the exit status of every failure of karman itself,
// as opposed to the exit status of an app.
const ExitRuntimeError = 254

// Entrypoint is a hidden command: it gets the arguments after its name
// and returns the process's exit status.
type Entrypoint func(args []string) int

// Table maps the names of a binary's hidden entrypoints to them.
type Table map[string]Entrypoint

// Dispatch runs the entrypoint that args[1] names, if any, and exits with
// its status; for any other command line it returns, doing nothing.
func (t Table) Dispatch(args []string) {
	if len(args) < 2 {
		return
	}
	if f, ok := t[args[1]]; ok {
		os.Exit(f(args[2:]))
	}
}

// Line is err as the one line a user sees: "karman: " and the error, its
// line breaks (errors.Join) turned into "; ".
func Line(err error) string {
	return "karman: " + strings.ReplaceAll(err.Error(), "\n", "; ")
}

// Fail writes err to w as its one line and returns ExitRuntimeError, for
// the caller to exit with.
func Fail(w io.Writer, err error) int {
	fmt.Fprintln(w, Line(err))
	return ExitRuntimeError
}
