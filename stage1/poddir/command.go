package poddir

import (
	"fmt"
	"strconv"
	"strings"
)

// The hidden entrypoints of karman-stage1, for the multicall table of its
// main. Their command lines are part of the stage0 -> stage1 interface
// (InterfaceVersion).
const (
	// CmdRun is the supervisor: karman-stage1 __stage1-run [--debug]
	// [--lock-fd=N] PODDIR.
	CmdRun = "__stage1-run"
	// CmdInit is the pod's init, forked by the supervisor in new
	// namespaces. It takes no arguments: its bootstrap data arrives on
	// fd 3.
	CmdInit = "__stage1-init"
	// CmdExec is the exec shim (package podinit), exec'd by the init for
	// the apps that need it: karman-stage1 __stage1-exec PATH ARGV...
	CmdExec = "__stage1-exec"
)

// BinaryName is the stage1 binary's file name: the supervisor and the pod
// init, without the CLI, the image store or the cgroup library.
const BinaryName = "karman-stage1"

// SupervisorArgs is the supervisor's command line.
func SupervisorArgs(podDir string, lockFD int, debug bool) []string {
	args := []string{BinaryName, CmdRun}
	if debug {
		args = append(args, "--debug")
	}
	if lockFD != 3 {
		args = append(args, "--lock-fd="+strconv.Itoa(lockFD))
	}
	return append(args, podDir)
}

// SupervisorFlags are the supervisor's arguments (after CmdRun).
type SupervisorFlags struct {
	PodDir string
	LockFD int
	Debug  bool
}

// ParseSupervisorArgs parses the supervisor's arguments.
func ParseSupervisorArgs(args []string) (SupervisorFlags, error) {
	f := SupervisorFlags{LockFD: 3}
	for _, a := range args {
		switch {
		case a == "--debug":
			f.Debug = true
		case strings.HasPrefix(a, "--lock-fd="):
			n, err := strconv.Atoi(strings.TrimPrefix(a, "--lock-fd="))
			if err != nil || n < 3 {
				return f, fmt.Errorf("bad %s", a)
			}
			f.LockFD = n
		case strings.HasPrefix(a, "-"):
			return f, fmt.Errorf("unknown flag %s", a)
		case f.PodDir != "":
			return f, fmt.Errorf("unexpected argument %q", a)
		default:
			f.PodDir = a
		}
	}
	if f.PodDir == "" {
		return f, fmt.Errorf("usage: %s %s [--debug] [--lock-fd=N] PODDIR", BinaryName, CmdRun)
	}
	return f, nil
}
