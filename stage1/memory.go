package stage1

import (
	"bufio"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// trimDelay is how long a pod runs before its supervisor and init trim
// their memory: short-lived pods never pay for it (a garbage collection and
// a walk of smaps), and it stays off the start path.
const trimDelay = 200 * time.Millisecond

// exeMaps locates the karman binary's mappings for trimMemory: the inode
// of the executable and /proc/self/smaps, opened while /proc is reachable
// (the init pivots away from it).
type exeMaps struct {
	smaps *os.File
	ino   string
}

func openExeMaps() *exeMaps {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		return nil
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil
	}
	return &exeMaps{smaps: f, ino: strconv.FormatUint(st.Ino, 10)}
}

// trimMemory gives back what start-up touched and a long-lived supervisor
// or init no longer needs: free heap pages, and the resident pages of the
// binary's read-only mappings (code, read-only data), which the kernel
// maps back from the page cache when they are used again. A mapping that
// is writable, or holds any private (anonymous) page, such as relocated
// read-only data of a position-independent binary, is left alone:
// dropping it would lose what was written there.
func (m *exeMaps) trimMemory() {
	debug.FreeOSMemory()
	if m == nil {
		return
	}
	if _, err := m.smaps.Seek(0, io.SeekStart); err != nil {
		return
	}
	var start, end uint64 // the current candidate mapping, if any
	sc := bufio.NewScanner(m.smaps)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) == 0 {
			continue
		}
		if fs[0] == "Anonymous:" {
			if end > start && len(fs) > 1 && fs[1] == "0" {
				unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_DONTNEED)
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
}
