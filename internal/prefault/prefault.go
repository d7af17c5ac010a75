// Package prefault spares the process that imports it most of the page
// faults of its start, as soon as the package is initialised. It is for
// short-lived processes: `karman`, which execs the lean supervisor within
// milliseconds of a pod's start. The pod's own processes (karman-stage1)
// do not import it.
//
// A Go program's start is mostly page faults: each 4 KiB page of its heap,
// code or data that it touches first is one. `karman` links many packages
// (the registry client, the cgroup library, CNI, the agent's server) and
// takes about 600 faults before its main function runs. On a virtual
// machine whose page tables the host shadows, each costs tens of
// microseconds, and `karman`'s own start is on the critical path of every
// pod's start. So, first thing:
//
//   - HugeHeap collapses the 2 MiB of the heap that the packages'
//     initialisation fills into one transparent huge page
//     (madvise(MADV_COLLAPSE), Linux 6.1): about 300 faults fewer. The
//     page stays resident in full (the Go runtime does not give back pages
//     it never used), which a process that is gone in milliseconds can
//     afford.
//   - MapText maps the binary's code, which the page cache already holds,
//     in one call (madvise(MADV_POPULATE_READ), Linux 5.14) instead of a
//     fault per 64 KiB the process runs first.
//
// Either does nothing where the kernel refuses it, and HugeHeap nothing
// where transparent huge pages are disabled
// (/sys/kernel/mm/transparent_hugepage/enabled: never). Neither fails.
package prefault

import (
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The package imports only x/sys/unix and what that imports, so that Go
// initialises it before most other packages: their initialisation is
// what it is for.

// hugePage is the size of a PMD-mapped transparent huge page on amd64 and
// arm64 (4 KiB base pages).
const hugePage = 2 << 20

// thpEnabled is the sysfs switch that a system administrator sets to
// "never" to keep huge pages out of every process.
const thpEnabled = "/sys/kernel/mm/transparent_hugepage/enabled"

var first *[64]byte // a heap allocation, kept reachable

func init() {
	HugeHeap()
	MapText()
}

// HugeHeap asks the kernel to back the 2 MiB-aligned block of the heap
// that holds the process's current allocations with one huge page. It
// reports whether the kernel did.
func HugeHeap() bool {
	if enabled, ok := readSmall(thpEnabled, 128); !ok || strings.Contains(enabled, "[never]") {
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

// MapText maps all of the executable mapping that holds this package's
// code (the binary's text) into the process's page tables, from the page
// cache. It reports whether the kernel did.
func MapText() bool {
	f := MapText
	pc := **(**uintptr)(unsafe.Pointer(&f))
	lo, hi, ok := mappingOf(pc)
	return ok && populate(lo, hi)
}

// populate maps the pages of [lo, hi), a file mapping, from the page cache
// (reading them in first if need be).
func populate(lo, hi uintptr) bool {
	_, _, errno := unix.Syscall(unix.SYS_MADVISE, lo, hi-lo, unix.MADV_POPULATE_READ)
	return errno == 0
}

// mappingOf finds the mapping that holds addr in /proc/self/maps.
func mappingOf(addr uintptr) (lo, hi uintptr, ok bool) {
	maps, ok := readSmall("/proc/self/maps", 64<<10)
	if !ok {
		return 0, 0, false
	}
	for _, line := range strings.Split(maps, "\n") {
		span, _, _ := strings.Cut(line, " ")
		l, h, found := strings.Cut(span, "-")
		if !found {
			continue
		}
		a, err1 := strconv.ParseUint(l, 16, 64)
		b, err2 := strconv.ParseUint(h, 16, 64)
		if err1 == nil && err2 == nil && uint64(addr) >= a && uint64(addr) < b {
			return uintptr(a), uintptr(b), true
		}
	}
	return 0, 0, false
}

// readSmall reads a file of at most size bytes (a young process's maps
// take a few KiB).
func readSmall(name string, size int) (string, bool) {
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", false
	}
	defer unix.Close(fd)
	buf := make([]byte, size)
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if err != nil {
			return "", false
		}
		if m == 0 {
			break
		}
		n += m
	}
	return string(buf[:n]), true
}
