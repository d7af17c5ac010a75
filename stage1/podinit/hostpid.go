package podinit

import (
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// A pod in the host's PID namespace (Pod.HostPID) has no PID namespace
// whose end takes its processes with it, and kill(-1) there would reach
// every process of the host. The init is a child subreaper instead: every
// process of the pod that loses its parent becomes the init's child, so
// the pod is the init and its descendants, which killAll signals by
// walking the host's /proc (opened before the pivot).

// hostProc opens the host's /proc for a pod in the host's PID namespace
// and makes the init the subreaper of its descendants.
func (in *podInit) hostProc() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("pod init: subreaper: %w", err)
	}
	fd, err := unix.Open("/proc", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("pod init: the host's /proc: %w", err)
	}
	in.procDir = fd
	return nil
}

// killAll sends sig to every process of the pod but the init: kill(-1)
// in the pod's own PID namespace, its descendants in the host's.
func (in *podInit) killAll(sig unix.Signal) {
	if !in.pod.HostPID {
		unix.Kill(-1, sig)
		return
	}
	// A process may fork while the walk runs: a few rounds, until none
	// is found. (SIGKILL is final; other signals go out once.)
	for range 8 {
		pids := descendants(in.procDir, os.Getpid())
		for _, pid := range pids {
			unix.Kill(pid, sig)
		}
		if len(pids) == 0 || sig != unix.SIGKILL {
			return
		}
	}
}

// descendants lists the descendants of pid, from the /proc at dir.
func descendants(dir, pid int) []int {
	parent := map[int]int{}
	for _, p := range procPIDs(dir) {
		if pp, ok := procParent(dir, p); ok {
			parent[p] = pp
		}
	}
	var out []int
	for p := range parent {
		for q, n := parent[p], 0; q > 1 && n < 4096; q, n = parent[q], n+1 {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// procPIDs lists the processes of the /proc at dir.
func procPIDs(dir int) []int {
	fd, err := unix.Openat(dir, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), "proc")
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	var out []int
	for _, n := range names {
		if p, err := strconv.Atoi(n); err == nil && p > 0 {
			out = append(out, p)
		}
	}
	return out
}

// procParent reads a process's parent from <dir>/PID/stat: the field
// after the command, which is in parentheses and may hold any byte.
func procParent(dir, pid int) (int, bool) {
	fd, err := unix.Openat(dir, strconv.Itoa(pid)+"/stat", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, false
	}
	defer unix.Close(fd)
	buf := make([]byte, 1024)
	n, err := unix.Read(fd, buf)
	if err != nil || n <= 0 {
		return 0, false
	}
	b := buf[:n]
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	pp, err := strconv.Atoi(string(f[1]))
	return pp, err == nil
}
