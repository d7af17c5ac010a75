package prefault

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/tests/testenv"
)

// TestHugeHeap checks that the block of the heap that holds a fresh
// allocation is one huge page after HugeHeap: the smaps entry of its
// mapping counts at least 2 MiB of anonymous huge pages.
func TestHugeHeap(t *testing.T) {
	if b, err := os.ReadFile(thpEnabled); err != nil {
		testenv.SkipAllowed(t, testenv.KernelLacks, fmt.Sprintf("no transparent huge pages (%v)", err))
	} else if strings.Contains(string(b), "[never]") {
		testenv.Missing(t, "transparent huge pages ("+thpEnabled+" says never)", "echo madvise > "+thpEnabled)
	}
	if !HugeHeap() {
		b, _ := os.ReadFile(thpEnabled)
		t.Fatalf("the kernel refused MADV_COLLAPSE of the heap (THP %q); it needs Linux 6.1 or newer", strings.TrimSpace(string(b)))
	}
	m, err := smapsOf(uintptr(unsafe.Pointer(first)))
	if err != nil {
		t.Fatal(err)
	}
	if m["AnonHugePages"] < hugePage>>10 {
		t.Fatalf("the heap mapping holds %d KiB of huge pages after HugeHeap, want at least %d", m["AnonHugePages"], hugePage>>10)
	}
}

// TestMapText checks that MapText finds the binary's code and that the
// kernel maps it: all of its mapping is resident after MapText.
func TestMapText(t *testing.T) {
	if !MapText() {
		t.Fatal("the kernel refused MADV_POPULATE_READ of the binary's code; it needs Linux 5.14 or newer")
	}
	f := MapText
	m, err := smapsOf(**(**uintptr)(unsafe.Pointer(&f)))
	if err != nil {
		t.Fatal(err)
	}
	if m["Size"] == 0 || m["Rss"] < m["Size"] {
		t.Fatalf("the code mapping has %d of %d KiB resident after MapText", m["Rss"], m["Size"])
	}
}

// TestPopulate maps a fresh mapping of a file: none of it is resident
// before, all of it after.
func TestPopulate(t *testing.T) {
	name := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(name, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(name, unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	b, err := unix.Mmap(fd, 0, 1<<20, unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(b)
	lo := uintptr(unsafe.Pointer(&b[0]))
	before, err := smapsOf(lo)
	if err != nil {
		t.Fatal(err)
	}
	if !populate(lo, lo+uintptr(len(b))) {
		t.Fatal("the kernel refused MADV_POPULATE_READ; it needs Linux 5.14 or newer")
	}
	after, err := smapsOf(lo)
	if err != nil {
		t.Fatal(err)
	}
	if before["Rss"] != 0 || after["Rss"] != 1<<10 {
		t.Fatalf("resident before and after: %d and %d KiB, want 0 and %d", before["Rss"], after["Rss"], 1<<10)
	}
}

func TestMappingOf(t *testing.T) {
	p := new(int)
	lo, hi, ok := mappingOf(uintptr(unsafe.Pointer(p)))
	if !ok || uintptr(unsafe.Pointer(p)) < lo || uintptr(unsafe.Pointer(p)) >= hi {
		t.Fatalf("mappingOf(%p) = %#x-%#x, %v", p, lo, hi, ok)
	}
	if _, _, ok := mappingOf(0); ok {
		t.Fatal("mappingOf(0) found a mapping")
	}
}

// smapsOf reads the kB fields of the mapping that holds addr in
// /proc/self/smaps.
func smapsOf(addr uintptr) (map[string]int, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var m map[string]int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if lo, hi, ok := strings.Cut(fields[0], "-"); ok && !strings.HasSuffix(fields[0], ":") {
			l, err1 := strconv.ParseUint(lo, 16, 64)
			h, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 == nil && err2 == nil {
				if m != nil {
					return m, nil // the next mapping: done
				}
				if uint64(addr) >= l && uint64(addr) < h {
					m = map[string]int{}
				}
				continue
			}
		}
		if m != nil && len(fields) == 3 && fields[2] == "kB" {
			n, _ := strconv.Atoi(fields[1])
			m[strings.TrimSuffix(fields[0], ":")] = n
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("no mapping holds %#x in /proc/self/smaps", addr)
	}
	return m, nil
}
