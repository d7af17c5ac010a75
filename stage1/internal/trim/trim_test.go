package trim

import (
	"bufio"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

// exeRSS is the resident size, in KiB, of this binary's read-only
// mappings.
func exeRSS(t *testing.T, ino string) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	total, ours := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		switch {
		case len(fs) >= 5 && strings.Contains(fs[0], "-"):
			ours = fs[4] == ino && !strings.Contains(fs[1], "w")
		case ours && len(fs) >= 2 && fs[0] == "Rss:":
			n, _ := strconv.Atoi(fs[1])
			total += n
		}
	}
	return total
}

// TestSettle: settle gives back the binary's resident code pages and turns
// the periodic garbage collection off, under a finite memory limit.
func TestSettle(t *testing.T) {
	m := Open()
	if m == nil {
		t.Fatal("Open: cannot read /proc/self/exe or /proc/self/smaps")
	}
	defer m.smaps.Close()
	gc := debug.SetGCPercent(-1)
	limit := debug.SetMemoryLimit(-1)
	defer func() {
		debug.SetGCPercent(gc)
		debug.SetMemoryLimit(limit)
	}()
	debug.SetGCPercent(gc)

	before := exeRSS(t, m.ino)
	m.Settle()
	after := exeRSS(t, m.ino)
	if pct := debug.SetGCPercent(gc); pct != -1 {
		t.Errorf("GC percent after settle = %d, want -1 (off)", pct)
	}
	if l := debug.SetMemoryLimit(-1); l == math.MaxInt64 || l <= 0 {
		t.Errorf("memory limit after settle = %d, want a finite limit (the only GC trigger left)", l)
	}
	// Code runs after the trim and maps some pages back (16 at a time),
	// the runtime's and the testing package's most of all in this small
	// binary; a good part of what it touched to get here stays out.
	if after > before*3/4 {
		t.Errorf("resident code and read-only data: %d KiB before settle, %d KiB after; want a quarter or more given back", before, after)
	}
	t.Logf("resident code and read-only data: %d KiB before, %d KiB after", before, after)
}
