package isolators

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The default seccomp filter refuses, with EPERM, the system calls that
// the widely used container default profile keeps from containers: kernel
// keyrings, kexec and module loading, bpf, perf, mounting and namespaces,
// setting clocks, swap, reboot, ptrace and cross-process memory access,
// and the other administration calls listed in deniedSyscalls; clone with
// namespace flags is refused too, and clone3 answers ENOSYS (its flags
// cannot be inspected) so that libraries fall back to clone. Everything
// else is allowed: a deny list, so that new harmless system calls work,
// where the reference profile is an allow list. It covers the native
// x86-64 ABI and the 32-bit (i386) one; x32 system calls answer ENOSYS and
// any other architecture is killed.
//
// Why a filter written here and not libseccomp: karman is one static
// binary without cgo (the pod init relies on it), the program is built
// once per pod in microseconds, and a deny list of a few dozen calls is a
// short, auditable table (deniedSyscalls) rather than a dependency.

// deniedSyscall names a refused call and its numbers on x86-64 and i386
// (noSyscall where the ABI lacks it).
type deniedSyscall struct {
	name       string
	nr64, nr32 uint32
}

const noSyscall = ^uint32(0)

var deniedSyscalls = []deniedSyscall{
	{"acct", unix.SYS_ACCT, 51},
	{"add_key", unix.SYS_ADD_KEY, 286},
	{"bpf", unix.SYS_BPF, 357},
	{"clock_adjtime", unix.SYS_CLOCK_ADJTIME, 343},
	{"clock_adjtime64", noSyscall, 405},
	{"clock_settime", unix.SYS_CLOCK_SETTIME, 264},
	{"clock_settime64", noSyscall, 404},
	{"create_module", unix.SYS_CREATE_MODULE, 127},
	{"delete_module", unix.SYS_DELETE_MODULE, 129},
	{"finit_module", unix.SYS_FINIT_MODULE, 350},
	{"fsconfig", unix.SYS_FSCONFIG, 431},
	{"fsmount", unix.SYS_FSMOUNT, 432},
	{"fsopen", unix.SYS_FSOPEN, 430},
	{"fspick", unix.SYS_FSPICK, 433},
	{"get_kernel_syms", unix.SYS_GET_KERNEL_SYMS, 130},
	{"init_module", unix.SYS_INIT_MODULE, 128},
	{"ioperm", unix.SYS_IOPERM, 101},
	{"iopl", unix.SYS_IOPL, 110},
	{"kcmp", unix.SYS_KCMP, 349},
	{"kexec_file_load", unix.SYS_KEXEC_FILE_LOAD, noSyscall},
	{"kexec_load", unix.SYS_KEXEC_LOAD, 283},
	{"keyctl", unix.SYS_KEYCTL, 288},
	{"lookup_dcookie", unix.SYS_LOOKUP_DCOOKIE, 253},
	{"mount", unix.SYS_MOUNT, 21},
	{"mount_setattr", unix.SYS_MOUNT_SETATTR, 442},
	{"move_mount", unix.SYS_MOVE_MOUNT, 429},
	{"move_pages", unix.SYS_MOVE_PAGES, 317},
	{"name_to_handle_at", unix.SYS_NAME_TO_HANDLE_AT, 341},
	{"nfsservctl", unix.SYS_NFSSERVCTL, 169},
	{"open_by_handle_at", unix.SYS_OPEN_BY_HANDLE_AT, 342},
	{"open_tree", unix.SYS_OPEN_TREE, 428},
	{"perf_event_open", unix.SYS_PERF_EVENT_OPEN, 336},
	{"pivot_root", unix.SYS_PIVOT_ROOT, 217},
	{"process_vm_readv", unix.SYS_PROCESS_VM_READV, 347},
	{"process_vm_writev", unix.SYS_PROCESS_VM_WRITEV, 348},
	{"ptrace", unix.SYS_PTRACE, 26},
	{"query_module", unix.SYS_QUERY_MODULE, 167},
	{"quotactl", unix.SYS_QUOTACTL, 131},
	{"reboot", unix.SYS_REBOOT, 88},
	{"request_key", unix.SYS_REQUEST_KEY, 287},
	{"setns", unix.SYS_SETNS, 346},
	{"settimeofday", unix.SYS_SETTIMEOFDAY, 79},
	{"stime", noSyscall, 25},
	{"swapoff", unix.SYS_SWAPOFF, 115},
	{"swapon", unix.SYS_SWAPON, 87},
	{"sysfs", unix.SYS_SYSFS, 135},
	{"_sysctl", unix.SYS__SYSCTL, 149},
	{"umount", noSyscall, 22},
	{"umount2", unix.SYS_UMOUNT2, 52},
	{"unshare", unix.SYS_UNSHARE, 310},
	{"uselib", unix.SYS_USELIB, 86},
	{"userfaultfd", unix.SYS_USERFAULTFD, 374},
	{"ustat", unix.SYS_USTAT, 62},
	{"vm86", noSyscall, 166},
	{"vm86old", noSyscall, 113},
}

// namespaceFlags are the clone flags that create namespaces.
const namespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

const (
	x32Bit   = 0x40000000
	clone32  = 120
	clone332 = 435
)

// DefaultSeccomp returns the default filter as a BPF program.
func DefaultSeccomp() []unix.SockFilter {
	var a asm
	a.stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, 4) // arch
	a.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, unix.AUDIT_ARCH_X86_64, "x86_64", "")
	a.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, unix.AUDIT_ARCH_I386, "i386", "")
	a.stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_KILL_PROCESS)
	a.block("x86_64", unix.SYS_CLONE, unix.SYS_CLONE3, true, func(d deniedSyscall) uint32 { return d.nr64 })
	a.block("i386", clone32, clone332, false, func(d deniedSyscall) uint32 { return d.nr32 })
	a.label("deny")
	a.stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_ERRNO|uint32(unix.EPERM))
	a.label("enosys")
	a.stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_ERRNO|uint32(unix.ENOSYS))
	return a.assemble()
}

// block checks one ABI's system call number: x32 calls (on x86-64) and
// clone3 answer ENOSYS, clone with namespace flags and the denied calls
// EPERM, the rest is allowed.
func (a *asm) block(name string, clone, clone3 uint32, x32 bool, nr func(deniedSyscall) uint32) {
	a.label(name)
	a.stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, 0) // nr
	if x32 {
		a.jump(unix.BPF_JMP|unix.BPF_JSET|unix.BPF_K, x32Bit, "enosys", "")
	}
	a.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, clone3, "enosys", "")
	next := name + "-calls"
	a.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, clone, "", next)
	a.stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, 16) // low word of args[0], the flags
	a.jump(unix.BPF_JMP|unix.BPF_JSET|unix.BPF_K, namespaceFlags, "deny", "")
	a.stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_ALLOW)
	a.label(next)
	for _, d := range deniedSyscalls {
		if n := nr(d); n != noSyscall {
			a.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, n, "deny", "")
		}
	}
	a.stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_ALLOW)
}

// asm assembles a BPF program with forward jumps to labels ("" is the
// next instruction).
type asm struct {
	prog   []unix.SockFilter
	jumps  map[int][2]string
	labels map[string]int
}

func (a *asm) stmt(code uint16, k uint32) {
	a.prog = append(a.prog, unix.SockFilter{Code: code, K: k})
}

func (a *asm) jump(code uint16, k uint32, jt, jf string) {
	if a.jumps == nil {
		a.jumps = map[int][2]string{}
	}
	a.jumps[len(a.prog)] = [2]string{jt, jf}
	a.stmt(code, k)
}

func (a *asm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.prog)
}

func (a *asm) assemble() []unix.SockFilter {
	for at, targets := range a.jumps {
		for i, l := range targets {
			off := 0
			if l != "" {
				to, ok := a.labels[l]
				if !ok || to <= at || to-at-1 > 255 {
					panic(fmt.Sprintf("seccomp: bad jump from %d to %q", at, l))
				}
				off = to - at - 1
			}
			if i == 0 {
				a.prog[at].Jt = uint8(off)
			} else {
				a.prog[at].Jf = uint8(off)
			}
		}
	}
	return a.prog
}

// InstallSeccomp loads prog as a seccomp filter on the calling thread,
// which its children inherit. The thread must have no_new_privs set (or
// CAP_SYS_ADMIN).
func InstallSeccomp(prog []unix.SockFilter) error {
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if _, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		return fmt.Errorf("loading the seccomp filter: %w", errno)
	}
	return nil
}
