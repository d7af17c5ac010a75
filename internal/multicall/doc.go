// Package multicall is how karman's binaries start: one table of hidden
// entrypoints, dispatched on os.Args[1] as the first line of main (the
// re-executions: the pod supervisor, the pod init, the exec shim, the
// network teardown), and the one way a command reports its failure, a
// single line "karman: ..." on stderr and exit status 254.
//
//	func main() {
//		multicall.Table{"__stage1-run": supervisor.Main}.Dispatch(os.Args)
//		// the binary's own commands
//	}
//
// An entrypoint's name starts with "__", so that it never clashes with a
// command of the CLI.
package multicall
