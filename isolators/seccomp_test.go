package isolators

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestDeniedSyscallTable: numbers are unique per ABI, every call exists on
// at least one ABI, and each appears in the program as a comparison.
func TestDeniedSyscallTable(t *testing.T) {
	prog := DefaultSeccomp()
	compared := map[uint32]int{}
	for _, ins := range prog {
		if ins.Code == unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K {
			compared[ins.K]++
		}
	}
	for _, abi := range []struct {
		name string
		nr   func(deniedSyscall) uint32
	}{{"x86_64", func(d deniedSyscall) uint32 { return d.nr64 }}, {"i386", func(d deniedSyscall) uint32 { return d.nr32 }}} {
		seen := map[uint32]string{}
		for _, d := range deniedSyscalls {
			n := abi.nr(d)
			if n == noSyscall {
				continue
			}
			if other, dup := seen[n]; dup {
				t.Errorf("%s: %s and %s share number %d", abi.name, d.name, other, n)
			}
			seen[n] = d.name
			if compared[n] == 0 {
				t.Errorf("%s: %s (%d) is not in the program", abi.name, d.name, n)
			}
		}
	}
	for _, d := range deniedSyscalls {
		if d.nr64 == noSyscall && d.nr32 == noSyscall {
			t.Errorf("%s exists on no ABI", d.name)
		}
	}
	if len(prog) > 255 {
		t.Errorf("program of %d instructions; jumps may not reach", len(prog))
	}
}
