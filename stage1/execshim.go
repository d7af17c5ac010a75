package stage1

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/isolators"
)

// The exec shim starts an app whose seccomp filter the init cannot load
// on the thread that forks it. A filter loaded on that thread is in force
// from the fork on, for the Go runtime code the thread still runs (the
// fork itself, a channel send, the thread's exit): the default filter
// refuses nothing the runtime uses, but an app's own list may (a retain
// list refuses futex unless it names it; a remove list may name mmap).
// Such an app is started as `/proc/self/exe __stage1-exec PATH ARGV...`
// (the karman binary, through the app's own /proc, already chrooted and
// with the app's user, groups, directory, stdio, no_new_privs and
// bounding set): the shim reads the filter from fd 3, loads it on its
// main thread and calls execve at once, as runc's init does. The app's
// filter must allow execve, which retain lists always do.
const (
	cmdExec = "__stage1-exec"
	// execShimPath is the karman binary as the app's root sees it.
	execShimPath = "/proc/self/exe"
	// execShimFD carries the filter (isolators.EncodeSeccomp) to the shim.
	execShimFD = 3
)

// needsExecShim tells whether app starts through the exec shim: when it
// has a filter of its own, or any filter on cgroup v2, where the thread
// that forks it must call clone3 (which every filter refuses) to start it
// inside its cgroup.
func needsExecShim(app *App, cgroupV2 bool) bool {
	if app.Unconfined || app.Seccomp != nil && app.Seccomp.Mode == isolators.SeccompUnconfined {
		return false
	}
	return cgroupV2 || app.Seccomp != nil
}

// execShimPipe returns the read end of a pipe holding the app's filter.
func execShimPipe(app *App) (int, error) {
	prog, err := appFilter(app)
	if err != nil {
		return -1, err
	}
	b := isolators.EncodeSeccomp(prog)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return -1, fmt.Errorf("pipe for the seccomp filter: %w", err)
	}
	defer unix.Close(p[1])
	// At most 32 KiB (4096 instructions): the pipe (64 KiB) holds it unread.
	if _, err := fdWriter(p[1]).Write(b); err != nil {
		unix.Close(p[0])
		return -1, fmt.Errorf("writing the seccomp filter: %w", err)
	}
	return p[0], nil
}

// execShimMain is the shim: args are PATH ARGV...
func execShimMain(args []string) int {
	runtime.LockOSThread() // the main goroutine keeps the main thread
	if len(args) < 2 {
		fmt.Fprintf(os.Stderr, "karman: usage: %s PATH ARGV...\n", cmdExec)
		return ExitRuntimeError
	}
	path, argv := args[0], args[1:]
	b, err := readAll(execShimFD)
	unix.Close(execShimFD)
	var prog []unix.SockFilter
	if err == nil {
		prog, err = isolators.DecodeSeccomp(b)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "karman: app %s: reading its seccomp filter: %v\n", path, err)
		return ExitRuntimeError
	}
	// Everything execve needs is allocated before the filter is loaded.
	argv0, err := syscall.BytePtrFromString(path)
	if err != nil {
		return shimFail(path, err)
	}
	argvp, err := syscall.SlicePtrFromStrings(argv)
	if err != nil {
		return shimFail(path, err)
	}
	envp, err := syscall.SlicePtrFromStrings(os.Environ())
	if err != nil {
		return shimFail(path, err)
	}
	if len(prog) > 0 {
		if err := isolators.InstallSeccomp(prog); err != nil {
			fmt.Fprintf(os.Stderr, "karman: app %s: %v\n", path, err)
			return ExitRuntimeError
		}
	}
	_, _, errno := syscall.RawSyscall(unix.SYS_EXECVE, uintptr(unsafe.Pointer(argv0)),
		uintptr(unsafe.Pointer(&argvp[0])), uintptr(unsafe.Pointer(&envp[0])))
	return shimFail(path, errno)
}

func shimFail(path string, err error) int {
	xe, _ := execErrno(path, err).(*execError)
	fmt.Fprintf(os.Stderr, "karman: app: %s: %s\n", xe.Path, xe.Reason)
	return xe.Code
}

// readAll reads fd to its end.
func readAll(fd int) ([]byte, error) {
	var out []byte
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return out, nil
		}
		out = append(out, buf[:n]...)
	}
}
