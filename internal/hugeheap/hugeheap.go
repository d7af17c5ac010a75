// Package hugeheap backs the start of the heap of the process that imports
// it with one transparent huge page, as soon as the package is initialised.
//
// A Go program fills the first megabyte or so of its heap while its
// packages are initialised; each 4 KiB page it touches first is a page
// fault. `karman` links many packages (the registry client, the cgroup
// library, CNI, the agent's server) and takes about 300 such faults before
// its main function runs. On a virtual machine whose page tables the host
// shadows, each costs tens of microseconds, and `karman`'s own start is
// on the critical path of every pod's start. Collapsing the 2 MiB around
// the heap's first allocations into one huge page (madvise(MADV_COLLAPSE),
// Linux 6.1) turns the rest of those faults into none.
//
// Only short-lived processes should import it: the huge page stays
// resident in full, and the Go runtime does not give back pages it never
// used. `karman run` execs the lean supervisor within milliseconds, which
// drops the page; the pod's own processes (karman-stage1) do not import
// this package.
//
// It does nothing where transparent huge pages are disabled
// (/sys/kernel/mm/transparent_hugepage/enabled: never) or the kernel
// refuses the collapse; it never fails.
package hugeheap

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The package imports only x/sys/unix (and what it imports), so that Go
// initialises it before most other packages, whose allocations are what
// it is for.

// hugePage is the size of a PMD-mapped transparent huge page on amd64 and
// arm64 (4 KiB base pages).
const hugePage = 2 << 20

// thpEnabled is the sysfs switch that a system administrator sets to
// "never" to keep huge pages out of every process.
const thpEnabled = "/sys/kernel/mm/transparent_hugepage/enabled"

var first *[64]byte // a heap allocation, kept reachable

func init() { Collapse() }

// Collapse asks the kernel to back the 2 MiB-aligned block of the heap
// that holds the process's current allocations with one huge page. It
// reports whether the kernel did.
func Collapse() bool {
	if !allowed() {
		return false
	}
	first = new([64]byte)
	start := uintptr(unsafe.Pointer(first)) &^ (hugePage - 1)
	// The Go runtime maps its heap in 4 MiB-aligned blocks of at least
	// 4 MiB, so the block lies in one mapping; if not, the kernel refuses
	// with ENOMEM and nothing changes.
	_, _, errno := unix.Syscall(unix.SYS_MADVISE, start, hugePage, unix.MADV_COLLAPSE)
	return errno == 0
}

// allowed tells whether the administrator left transparent huge pages on
// ("always" or "madvise"): the file's selected value is in brackets.
func allowed() bool {
	fd, err := unix.Open(thpEnabled, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var buf [128]byte
	n, err := unix.Read(fd, buf[:])
	if err != nil || n <= 0 {
		return false
	}
	s := string(buf[:n])
	for i := 0; i+len("[never]") <= len(s); i++ {
		if s[i:i+len("[never]")] == "[never]" {
			return false
		}
	}
	return true
}
