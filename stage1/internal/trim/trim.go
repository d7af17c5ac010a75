package trim

import (
	"bufio"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Delay is how long a pod runs before its supervisor and init trim
// their memory: short-lived pods never pay for it (a garbage collection and
// a walk of smaps), and it stays off the start path.
const Delay = 200 * time.Millisecond

// Maps locates the karman binary's mappings for trimMemory: the inode
// of the executable and /proc/self/smaps, opened while /proc is reachable
// (the init pivots away from it).
type Maps struct {
	smaps *os.File
	ino   string
}

func Open() *Maps {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		return nil
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil
	}
	return &Maps{smaps: f, ino: strconv.FormatUint(st.Ino, 10)}
}

// gcHeadroom is how much a settled supervisor or init may allocate before
// a garbage collection runs (see settle).
const gcHeadroom = 4 << 20

// Settle trims the memory of a supervisor or init once the pod has
// started (trimMemory) and keeps it there while the pod is idle: the
// garbage collector's periodic cycle (one every two minutes at least,
// which walks the stacks, the binary's tables and the heap, and so maps
// back about a mebibyte that the trim gave away) is turned off, and a
// collection runs only when the process has allocated gcHeadroom more than
// it holds now (a memory limit). A pod's processes allocate little once
// their apps run: a message per app event, a status file per change.
func (m *Maps) Settle() {
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	debug.SetMemoryLimit(int64(ms.Sys-ms.HeapReleased) + gcHeadroom)
	debug.SetGCPercent(-1)
	m.trimMemory() // last: code that runs after it maps pages back
}

// trimMemory gives back what start-up touched and a long-lived supervisor
// or init no longer needs: the resident pages of the binary's read-only
// mappings (code, read-only data), which the kernel
// maps back from the page cache when they are used again. A mapping that
// is writable, or holds any private (anonymous) page, such as relocated
// read-only data of a position-independent binary, is left alone:
// dropping it would lose what was written there.
func (m *Maps) trimMemory() {
	if m == nil {
		return
	}
	if _, err := m.smaps.Seek(0, io.SeekStart); err != nil {
		return
	}
	// Find the mappings first and drop them all at the end, one system
	// call after another: code that runs after a drop maps its pages back
	// (16 at a time, by the kernel's fault-around).
	var drop [8][2]uint64
	n := 0
	var start, end uint64 // the current candidate mapping, if any
	sc := bufio.NewScanner(m.smaps)
	for sc.Scan() && n < len(drop) {
		fs := strings.Fields(sc.Text())
		if len(fs) == 0 {
			continue
		}
		if fs[0] == "Anonymous:" {
			if end > start && len(fs) > 1 && fs[1] == "0" {
				drop[n] = [2]uint64{start, end}
				n++
			}
			start, end = 0, 0
			continue
		}
		// A mapping's first line: start-end perms offset dev inode [path]
		lo, hi, ok := strings.Cut(fs[0], "-")
		if !ok || len(fs) < 5 {
			continue
		}
		start, end = 0, 0
		if fs[4] != m.ino || strings.Contains(fs[1], "w") {
			continue
		}
		s, err1 := strconv.ParseUint(lo, 16, 64)
		e, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 == nil && err2 == nil {
			start, end = s, e
		}
	}
	for _, r := range drop[:n] {
		unix.Syscall(unix.SYS_MADVISE, uintptr(r[0]), uintptr(r[1]-r[0]), unix.MADV_DONTNEED)
	}
}
