// Command syscallprobe calls the system calls named on its command line
// with harmless arguments and prints "name=errno" for each: the isolator
// tests run it inside pods, built for x86-64 and for i386.
package main

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

func main() {
	calls := map[string]uintptr{
		"getpid":       unix.SYS_GETPID,
		"keyctl":       unix.SYS_KEYCTL,
		"unshare":      unix.SYS_UNSHARE,
		"settimeofday": unix.SYS_SETTIMEOFDAY,
		"bpf":          unix.SYS_BPF,
		"ptrace":       unix.SYS_PTRACE,
	}
	for _, name := range os.Args[1:] {
		nr, ok := calls[name]
		if !ok {
			fmt.Printf("%s=unknown\n", name)
			continue
		}
		// All-zero arguments: unshare(0) and settimeofday(NULL, NULL) do
		// nothing and succeed, keyctl(0, 0) fails with ENOKEY or EINVAL;
		// only a filter answers EPERM.
		_, _, errno := syscall.RawSyscall(nr, 0, 0, 0)
		fmt.Printf("%s=%d\n", name, int(errno))
	}
}
