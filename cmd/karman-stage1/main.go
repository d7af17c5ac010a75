// Command karman-stage1 is the stage1 binary: the pod supervisor that
// `karman run` execs (or, for a detached pod, starts) and the pod init
// that the supervisor forks. It links only the stage1 package (no CLI,
// image store, registry client or cgroup library), so the two processes
// that stay with every running pod start fast and hold little memory. It
// is not meant to be run by hand; see the stage1 package documentation
// for its command line.
package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/karman-project/karman/internal/multicall"
	"github.com/karman-project/karman/stage1/poddir"
	"github.com/karman-project/karman/stage1/podinit"
	"github.com/karman-project/karman/stage1/supervisor"
)

func main() {
	// The supervisor forks the init, and the init each app, from
	// goroutines that change their thread's namespaces, cgroup or
	// seccomp filter and may end locked to it so that the runtime ends
	// the thread; the runtime cannot end the main thread, so the main
	// goroutine keeps it.
	runtime.LockOSThread()
	// No allocation sampling: its hash table costs pages in every pod.
	runtime.MemProfileRate = 0
	multicall.Table{
		poddir.CmdRun:  supervisor.Main,
		poddir.CmdInit: podinit.Main,
		poddir.CmdExec: podinit.ExecShimMain,
	}.Dispatch(os.Args)
	fmt.Fprintln(os.Stderr, "karman-stage1: this is karman's pod supervisor, started by `karman run`; run karman instead")
	os.Exit(multicall.ExitRuntimeError)
}
