package isolators

import (
	"slices"
	"strings"
)

// syscallEntry is one system call: its name and its numbers on x86-64
// and i386 (noSyscall where the ABI lacks it).
type syscallEntry struct {
	name       string
	nr64, nr32 uint32
}

const noSyscall = ^uint32(0)

// lookupSyscall finds a system call by its kernel name ("keyctl",
// "_sysctl", "setuid32"), in any case.
func lookupSyscall(name string) (syscallEntry, bool) {
	name = strings.ToLower(strings.TrimSpace(name))
	i, ok := slices.BinarySearchFunc(syscallTable[:], name, func(e syscallEntry, n string) int { return strings.Compare(e.name, n) })
	if !ok {
		return syscallEntry{}, false
	}
	return syscallTable[i], true
}

// SyscallNames lists every system call name karman knows (x86-64 and
// i386), sorted.
func SyscallNames() []string {
	out := make([]string, len(syscallTable))
	for i, e := range syscallTable {
		out[i] = e.name
	}
	return out
}
