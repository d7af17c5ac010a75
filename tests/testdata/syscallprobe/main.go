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
		"getppid":      unix.SYS_GETPPID,
		"getuid":       unix.SYS_GETUID,
		"keyctl":       unix.SYS_KEYCTL,
		"unshare":      unix.SYS_UNSHARE,
		"settimeofday": unix.SYS_SETTIMEOFDAY,
		"bpf":          unix.SYS_BPF,
		"ptrace":       unix.SYS_PTRACE,
	}
	if len(os.Args) == 3 && os.Args[1] == "forks" {
		forks(os.Args[2])
		return
	}
	for _, name := range os.Args[1:] {
		nr, ok := calls[name]
		if !ok {
			fmt.Printf("%s=unknown\n", name)
			continue
		}
		// All-zero arguments: unshare(0) and settimeofday(NULL, NULL) do
		// nothing and succeed, keyctl(0, 0) fails with ENOKEY or EINVAL,
		// getpid and getppid cannot fail; only a filter answers EPERM.
		_, _, errno := syscall.RawSyscall(nr, 0, 0, 0)
		fmt.Printf("%s=%d\n", name, int(errno))
	}
}

// forks starts up to n children (sleep 3) and prints how many it could
// start: a fork loop, bounded, that tells where the pids limit stopped it.
func forks(arg string) {
	var n int
	fmt.Sscan(arg, &n)
	var started []*os.Process
	for range n {
		p, err := os.StartProcess("/bin/sleep", []string{"sleep", "3"}, &os.ProcAttr{})
		if err != nil {
			break
		}
		started = append(started, p)
	}
	fmt.Printf("forks=%d\n", len(started))
	for _, p := range started {
		p.Kill()
		p.Wait()
	}
}
