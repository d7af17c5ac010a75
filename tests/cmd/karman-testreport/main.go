package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/karman-project/karman/tests/testenv"
	"github.com/karman-project/karman/tests/testreport"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: karman-testreport go test -json [flags] [packages]")
		return 2
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stderr = os.Stdin, os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintf(os.Stderr, "karman-testreport: %v\n", err)
		return 1
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "karman-testreport: %v\n", err)
		return 1
	}
	r := testreport.New(os.Stdout, testenv.Strict())
	readErr := r.Read(out)
	err = cmd.Wait()
	r.Summary()
	strictErr := r.Err()
	if strictErr != nil {
		fmt.Fprintf(os.Stderr, "karman-testreport: %v\n", strictErr)
	}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode()
	case err != nil:
		fmt.Fprintf(os.Stderr, "karman-testreport: %v\n", err)
		return 1
	case readErr != nil:
		fmt.Fprintf(os.Stderr, "karman-testreport: reading the test events: %v\n", readErr)
		return 1
	}
	if strictErr != nil {
		return 1
	}
	return 0
}
