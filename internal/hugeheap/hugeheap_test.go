package hugeheap

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// TestCollapse checks that the block of the heap that holds a fresh
// allocation is one huge page after Collapse: the smaps entry of its
// mapping counts at least 2 MiB of anonymous huge pages.
func TestCollapse(t *testing.T) {
	if !allowed() {
		t.Skipf("transparent huge pages are disabled here (%s: never)", thpEnabled)
	}
	if !Collapse() {
		b, _ := os.ReadFile(thpEnabled)
		t.Fatalf("the kernel refused MADV_COLLAPSE of the heap (THP %q); it needs Linux 6.1 or newer", strings.TrimSpace(string(b)))
	}
	addr := uintptr(unsafe.Pointer(first))
	kb, err := anonHugeKB(addr)
	if err != nil {
		t.Fatal(err)
	}
	if kb < hugePage>>10 {
		t.Fatalf("the heap mapping at %#x holds %d KiB of huge pages after Collapse, want at least %d", addr, kb, hugePage>>10)
	}
}

// anonHugeKB reads AnonHugePages of the mapping that holds addr.
func anonHugeKB(addr uintptr) (int, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if lo, hi, ok := strings.Cut(fields[0], "-"); ok && !strings.HasSuffix(fields[0], ":") {
			l, err1 := strconv.ParseUint(lo, 16, 64)
			h, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 == nil && err2 == nil {
				in = uint64(addr) >= l && uint64(addr) < h
				continue
			}
		}
		if in && fields[0] == "AnonHugePages:" {
			return strconv.Atoi(fields[1])
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no mapping holds %#x in /proc/self/smaps", addr)
}
