// Command karman-stage1 is the lean stage1 binary: the pod supervisor
// that `karman run` execs into and the pod init it starts. It links only
// the stage1 package (no CLI, image store, registry client or cgroup
// library), so the two processes that stay with every running pod start
// fast and hold little memory. It is not meant to be run by hand; see
// the stage1 package documentation for its command line.
package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/karman-project/karman/stage1"
)

func main() {
	// No allocation sampling: its hash table costs pages in every pod.
	runtime.MemProfileRate = 0
	if code, ok := stage1.Entrypoint(os.Args); ok {
		os.Exit(code)
	}
	fmt.Fprintln(os.Stderr, "karman-stage1: this is karman's pod supervisor, started by `karman run`; run karman instead")
	os.Exit(stage1.ExitRuntimeError)
}
