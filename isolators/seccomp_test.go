package isolators

import (
	"encoding/binary"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// run interprets a seccomp program for one call, as the kernel would:
// the seccomp_data is arch, nr and the arguments.
func run(t *testing.T, p []unix.SockFilter, arch, nr uint32, args ...uint64) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.LittleEndian.PutUint32(data[0:], nr)
	binary.LittleEndian.PutUint32(data[4:], arch)
	for i, a := range args {
		binary.LittleEndian.PutUint64(data[16+8*i:], a)
	}
	var acc uint32
	for pc := 0; pc < len(p); pc++ {
		ins := p[pc]
		switch ins.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			acc = binary.LittleEndian.Uint32(data[ins.K:])
		case unix.BPF_JMP | unix.BPF_JA:
			pc += int(ins.K)
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K:
			if acc == ins.K {
				pc += int(ins.Jt)
			} else {
				pc += int(ins.Jf)
			}
		case unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			if acc&ins.K != 0 {
				pc += int(ins.Jt)
			} else {
				pc += int(ins.Jf)
			}
		case unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K:
			if acc > ins.K {
				pc += int(ins.Jt)
			} else {
				pc += int(ins.Jf)
			}
		case unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K:
			if acc >= ins.K {
				pc += int(ins.Jt)
			} else {
				pc += int(ins.Jf)
			}
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K:
			acc &= ins.K
		case unix.BPF_RET | unix.BPF_K:
			return ins.K
		default:
			t.Fatalf("instruction %d: unexpected code %#x", pc, ins.Code)
		}
	}
	t.Fatal("program ran off its end")
	return 0
}

const (
	allow = unix.SECCOMP_RET_ALLOW
	kill  = unix.SECCOMP_RET_KILL_PROCESS
	x8664 = unix.AUDIT_ARCH_X86_64
	i386  = unix.AUDIT_ARCH_I386
)

func errno(e syscall.Errno) uint32 { return errnoAction(e) }

func nr(t *testing.T, name string, arch uint32) uint32 {
	t.Helper()
	e, ok := lookupSyscall(name)
	if !ok {
		t.Fatalf("no system call %s", name)
	}
	if arch == i386 {
		return e.nr32
	}
	return e.nr64
}

// TestSyscallTable: sorted unique names, unique numbers per ABI, and the
// numbers agree with the x86-64 constants of x/sys.
func TestSyscallTable(t *testing.T) {
	if !slices.IsSortedFunc(syscallTable[:], func(a, b syscallEntry) int { return strings.Compare(a.name, b.name) }) {
		t.Fatal("table not sorted by name")
	}
	seen64, seen32 := map[uint32]string{}, map[uint32]string{}
	for i, e := range syscallTable {
		if i > 0 && syscallTable[i-1].name == e.name {
			t.Errorf("%s twice", e.name)
		}
		for _, s := range []struct {
			m  map[uint32]string
			nr uint32
		}{{seen64, e.nr64}, {seen32, e.nr32}} {
			if s.nr == noSyscall {
				continue
			}
			if o, dup := s.m[s.nr]; dup {
				t.Errorf("%s and %s share %d", e.name, o, s.nr)
			}
			s.m[s.nr] = e.name
		}
	}
	for name, want := range map[string]uint32{"keyctl": unix.SYS_KEYCTL, "clone3": unix.SYS_CLONE3, "read": unix.SYS_READ, "unshare": unix.SYS_UNSHARE, "_sysctl": unix.SYS__SYSCTL} {
		if got := nr(t, name, x8664); got != want {
			t.Errorf("%s = %d on x86-64, want %d", name, got, want)
		}
	}
	// i386 numbers from the kernel's syscall_32.tbl.
	for name, want := range map[string]uint32{"keyctl": 288, "unshare": 310, "setuid32": 213, "clone": 120, "clone3": 435, "socketcall": 102} {
		if got := nr(t, name, i386); got != want {
			t.Errorf("%s = %d on i386, want %d", name, got, want)
		}
	}
	for _, list := range [][]string{deniedSyscalls, startSyscalls} {
		for _, n := range list {
			if _, ok := lookupSyscall(n); !ok {
				t.Errorf("%s is not a system call", n)
			}
		}
	}
}

func TestDefaultFilter(t *testing.T) {
	p := DefaultSeccomp()
	for _, arch := range []uint32{x8664, i386} {
		for name, want := range map[string]uint32{
			"getpid": allow, "read": allow, "keyctl": errno(unix.EPERM), "unshare": errno(unix.EPERM),
			"mount": errno(unix.EPERM), "bpf": errno(unix.EPERM), "clone3": errno(unix.ENOSYS),
		} {
			if got := run(t, p, arch, nr(t, name, arch)); got != want {
				t.Errorf("arch %#x %s: %#x, want %#x", arch, name, got, want)
			}
		}
		clone := nr(t, "clone", arch)
		if got := run(t, p, arch, clone, uint64(unix.SIGCHLD)); got != allow {
			t.Errorf("arch %#x plain clone: %#x", arch, got)
		}
		if got := run(t, p, arch, clone, unix.CLONE_NEWUSER|uint64(unix.SIGCHLD)); got != errno(unix.EPERM) {
			t.Errorf("arch %#x clone with CLONE_NEWUSER: %#x", arch, got)
		}
	}
	if got := run(t, p, x8664, x32Bit|unix.SYS_GETPID); got != errno(unix.ENOSYS) {
		t.Errorf("x32 getpid: %#x", got)
	}
	if got := run(t, p, unix.AUDIT_ARCH_AARCH64, 0); got != kill {
		t.Errorf("other architecture: %#x", got)
	}
	if len(p) > 255 {
		t.Errorf("default program of %d instructions", len(p))
	}
}

func TestRemoveAndRetain(t *testing.T) {
	rm, err := ParseSeccomp("mode=remove,errno=ENOTSUP,chmod,keyctl,clone3")
	if err != nil {
		t.Fatal(err)
	}
	p, err := rm.Program()
	if err != nil {
		t.Fatal(err)
	}
	for _, arch := range []uint32{x8664, i386} {
		for name, want := range map[string]uint32{
			"chmod":  errno(unix.EOPNOTSUPP), // listed
			"keyctl": errno(unix.EOPNOTSUPP), // listed and in the default: the listed errno
			"clone3": errno(unix.EOPNOTSUPP),
			"mount":  errno(unix.EPERM), // the default filter still applies
			"getpid": allow,
		} {
			if got := run(t, p, arch, nr(t, name, arch)); got != want {
				t.Errorf("remove, arch %#x %s: %#x, want %#x", arch, name, got, want)
			}
		}
	}

	rt, err := ParseSeccomp("mode=retain,read,WRITE,mmap,unshare,mmap2")
	if err != nil {
		t.Fatal(err)
	}
	p, err = rt.Program()
	if err != nil {
		t.Fatal(err)
	}
	for _, arch := range []uint32{x8664, i386} {
		for name, want := range map[string]uint32{
			"read": allow, "write": allow, "unshare": allow, // listed, even if the default refuses it
			"execve": allow, "exit_group": allow, "rt_sigreturn": allow, // what any program needs
			"chroot": errno(unix.EPERM), "setuid": errno(unix.EPERM),
			"getuid": errno(unix.EPERM), "keyctl": errno(unix.EPERM), "openat": errno(unix.EPERM),
		} {
			if got := run(t, p, arch, nr(t, name, arch)); got != want {
				t.Errorf("retain, arch %#x %s: %#x, want %#x", arch, name, got, want)
			}
		}
	}
	if got := run(t, p, i386, nr(t, "mmap2", i386)); got != allow {
		t.Errorf("retain: i386 mmap2 %#x", got)
	}

	// Every known call retained still fits the kernel's limit.
	all := &Seccomp{Mode: SeccompRetain, Errno: "EACCES", Syscalls: SyscallNames()}
	if p, err = all.Program(); err != nil {
		t.Fatal(err)
	}
	if got := run(t, p, x8664, 4000); got != errno(unix.EACCES) {
		t.Errorf("retain all: unknown number %#x", got)
	}

	if p, err := (&Seccomp{Mode: SeccompUnconfined}).Program(); err != nil || p != nil {
		t.Errorf("unconfined: %v, %v", p, err)
	}
}

func TestParseSeccomp(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Seccomp
	}{
		{"unconfined", Seccomp{Mode: "unconfined"}},
		{"mode=unconfined", Seccomp{Mode: "unconfined"}},
		{"mode=remove,keyctl", Seccomp{Mode: "remove", Syscalls: []string{"keyctl"}}},
		{"chmod,errno=enotsup,mode=remove,Chown,chmod", Seccomp{Mode: "remove", Errno: "ENOTSUP", Syscalls: []string{"chmod", "chown"}}},
		{"mode=retain,errno=EACCES,read, write", Seccomp{Mode: "retain", Errno: "EACCES", Syscalls: []string{"read", "write"}}},
	} {
		got, err := ParseSeccomp(tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if got.Mode != tc.want.Mode || got.Errno != tc.want.Errno || !slices.Equal(got.Syscalls, tc.want.Syscalls) {
			t.Errorf("%q = %+v, want %+v", tc.in, *got, tc.want)
		}
	}
	for in, wantErr := range map[string]string{
		"":                               "empty item",
		"keyctl":                         "say mode=remove or mode=retain",
		"mode=remove,keyctll":            `unknown system call "keyctll"`,
		"mode=remove,errno=EFOO,keyctl":  `unknown errno "EFOO"`,
		"mode=drop,keyctl":               "mode=drop: use mode=remove",
		"mode=retain":                    "needs the system calls to allow",
		"mode=remove":                    "needs the system calls to refuse",
		"unconfined,keyctl":              "unconfined takes no system calls",
		"mode=remove,mode=retain,keyctl": "mode given twice",
		"mode=remove,level=3,keyctl":     `unknown option "level"`,
		"mode=remove,foo,bar":            `unknown system call "bar"`, // every problem is reported
	} {
		_, err := ParseSeccomp(in)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%q: error %v, want %q", in, err, wantErr)
		}
	}
	if e, err := ParseErrno("ENOTSUP"); err != nil || e != unix.EOPNOTSUPP {
		t.Errorf("ENOTSUP = %v, %v", e, err)
	}
}

func TestSeccompEncoding(t *testing.T) {
	prog := DefaultSeccomp()
	back, err := DecodeSeccomp(EncodeSeccomp(prog))
	if err != nil || len(back) != len(prog) {
		t.Fatalf("decode: %d instructions, %v", len(back), err)
	}
	for i := range prog {
		if back[i] != prog[i] {
			t.Fatalf("instruction %d: %+v, want %+v", i, back[i], prog[i])
		}
	}
	if _, err := DecodeSeccomp([]byte{1, 2, 3}); err == nil {
		t.Error("a partial instruction decoded")
	}
}

func BenchmarkDefaultSeccomp(b *testing.B) {
	for b.Loop() {
		DefaultSeccomp()
	}
}

func BenchmarkRetainEverything(b *testing.B) {
	s := &Seccomp{Mode: SeccompRetain, Syscalls: SyscallNames()}
	for b.Loop() {
		if _, err := s.Program(); err != nil {
			b.Fatal(err)
		}
	}
}
