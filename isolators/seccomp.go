package isolators

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
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
// Per app, --seccomp changes it (see Seccomp): mode=remove refuses more
// calls on top of the default filter, mode=retain allows only the listed
// calls, unconfined loads no filter.
//
// Why a filter written here and not libseccomp: karman is one static
// binary without cgo (the pod init relies on it), the program is built
// once per app in microseconds, and the rules are a short, auditable
// table (deniedSyscalls) over the kernel's system call numbers
// (syscalls_table.go, generated from golang.org/x/sys).

// deniedSyscalls are refused with EPERM by the default filter.
var deniedSyscalls = []string{
	"acct", "add_key", "bpf", "clock_adjtime", "clock_adjtime64", "clock_settime", "clock_settime64",
	"create_module", "delete_module", "finit_module", "fsconfig", "fsmount", "fsopen", "fspick",
	"get_kernel_syms", "init_module", "ioperm", "iopl", "kcmp", "kexec_file_load", "kexec_load",
	"keyctl", "lookup_dcookie", "mount", "mount_setattr", "move_mount", "move_pages",
	"name_to_handle_at", "nfsservctl", "open_by_handle_at", "open_tree", "perf_event_open",
	"pivot_root", "process_vm_readv", "process_vm_writev", "ptrace", "query_module", "quotactl",
	"reboot", "request_key", "setns", "settimeofday", "stime", "swapoff", "swapon", "sysfs",
	"_sysctl", "umount", "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vm86", "vm86old",
}

// startSyscalls are allowed by every retain list: execve, which follows
// the filter's loading (stage1's exec shim loads it right before), and
// what any program needs to return from a signal handler and to exit.
var startSyscalls = []string{"execve", "exit", "exit_group", "rt_sigreturn", "sigreturn"}

// Seccomp is an app's seccomp setting, as `--seccomp` gives it and
// pod.json carries it. A nil *Seccomp is the default filter.
type Seccomp struct {
	// Mode is "remove" (the default filter, and the listed calls refused
	// too), "retain" (only the listed calls, and startSyscalls, allowed)
	// or "unconfined" (no filter). Such a filter must be loaded right
	// before execve: a thread that runs on after loading it may need
	// calls it refuses.
	Mode string `json:"mode"`
	// Errno answers the listed calls (remove) or every call not listed
	// (retain): a name such as EPERM (the default) or ENOTSUP.
	Errno    string   `json:"errno,omitempty"`
	Syscalls []string `json:"syscalls,omitempty"`
	// Profile is the whole filter in mode SeccompProfileMode (an OCI
	// seccomp profile, ParseSeccompProfile).
	Profile *SeccompProfile `json:"profile,omitempty"`
}

// Seccomp modes.
const (
	SeccompRemove     = "remove"
	SeccompRetain     = "retain"
	SeccompUnconfined = "unconfined"
)

// SeccompSyntax is the flag's syntax, for help and errors.
const SeccompSyntax = "mode=remove|retain[,errno=NAME],SYSCALL[,SYSCALL...] or unconfined"

// ParseSeccomp parses a --seccomp value: "unconfined", or
// "mode=remove|retain", an optional "errno=NAME" and system call names,
// comma-separated in any order. Every problem is reported.
func ParseSeccomp(value string) (*Seccomp, error) {
	s := &Seccomp{}
	var errs []error
	seen := map[string]bool{}
	for _, item := range strings.Split(value, ",") {
		item = strings.TrimSpace(item)
		key, val, isOpt := strings.Cut(item, "=")
		switch {
		case item == "":
			errs = append(errs, errors.New("empty item"))
		case item == SeccompUnconfined:
			key, val, isOpt = "mode", SeccompUnconfined, true
			fallthrough
		case isOpt:
			if seen[key] {
				errs = append(errs, fmt.Errorf("%s given twice", key))
			}
			seen[key] = true
			switch key {
			case "mode":
				if val != SeccompRemove && val != SeccompRetain && val != SeccompUnconfined {
					errs = append(errs, fmt.Errorf("mode=%s: use mode=remove (the default filter, and more calls refused), mode=retain (only the listed calls allowed) or unconfined", val))
				}
				s.Mode = val
			case "errno":
				if _, err := ParseErrno(val); err != nil {
					errs = append(errs, err)
				}
				s.Errno = strings.ToUpper(val)
			default:
				errs = append(errs, fmt.Errorf("unknown option %q (options are mode= and errno=)", key))
			}
		default:
			name := strings.ToLower(item)
			if _, ok := lookupSyscall(name); !ok {
				errs = append(errs, fmt.Errorf("unknown system call %q (not an x86-64 or i386 system call name; names are the kernel's, as in keyctl or clock_settime64)", item))
			} else if !slices.Contains(s.Syscalls, name) {
				s.Syscalls = append(s.Syscalls, name)
			}
		}
	}
	switch {
	case s.Mode == "" && len(errs) == 0:
		errs = append(errs, errors.New("say mode=remove or mode=retain before the system calls (or unconfined)"))
	case s.Mode == SeccompUnconfined && (len(s.Syscalls) > 0 || s.Errno != ""):
		errs = append(errs, errors.New("unconfined takes no system calls and no errno"))
	case s.Mode == SeccompRetain && len(s.Syscalls) == 0:
		errs = append(errs, errors.New("mode=retain needs the system calls to allow"))
	case s.Mode == SeccompRemove && len(s.Syscalls) == 0:
		errs = append(errs, errors.New("mode=remove needs the system calls to refuse"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("--seccomp %q: %w (syntax: %s)", value, errors.Join(errs...), SeccompSyntax)
	}
	return s, nil
}

// ParseErrno turns an error name (EPERM, enotsup) into its number.
func ParseErrno(name string) (syscall.Errno, error) {
	n := strings.ToUpper(strings.TrimSpace(name))
	// Names that share a number: the kernel's error table has one of each.
	alias := map[string]string{"ENOTSUP": "EOPNOTSUPP", "EOPNOTSUPP": "ENOTSUP", "EWOULDBLOCK": "EAGAIN", "EDEADLOCK": "EDEADLK"}[n]
	for e := syscall.Errno(1); e < 4096; e++ {
		if en := unix.ErrnoName(e); en != "" && (en == n || en == alias) {
			return e, nil
		}
	}
	return 0, fmt.Errorf("unknown errno %q (use a name such as EPERM, EACCES, ENOSYS or ENOTSUP)", name)
}

// DefaultSeccomp returns the default filter as a BPF program.
func DefaultSeccomp() []unix.SockFilter {
	prog, err := (*Seccomp)(nil).Program()
	if err != nil {
		panic(err) // the default tables are checked by the tests
	}
	return prog
}

// Program builds the app's filter: the default one for a nil s, nil for
// unconfined.
func (s *Seccomp) Program() ([]unix.SockFilter, error) {
	mode, errno, calls := SeccompRemove, unix.EPERM, []string(nil)
	if s != nil {
		mode, calls = s.Mode, s.Syscalls
		switch {
		case mode == SeccompUnconfined:
			return nil, nil
		case mode == SeccompProfileMode && s.Profile != nil:
			return s.Profile.program()
		case mode == SeccompProfileMode:
			return nil, errors.New("seccomp: a profile filter without its profile")
		}
		if s.Errno != "" {
			e, err := ParseErrno(s.Errno)
			if err != nil {
				return nil, err
			}
			errno = e
		}
	}
	var p prog
	p.stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, 4) // arch
	p.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, unix.AUDIT_ARCH_X86_64, 0, 1)
	p.stmt(unix.BPF_JMP|unix.BPF_JA, 0) // to the x86-64 block, patched below
	x86 := len(p) - 1
	p.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, unix.AUDIT_ARCH_I386, 1, 0)
	p.ret(unix.SECCOMP_RET_KILL_PROCESS)
	abis := []struct {
		x32         bool
		nr          func(syscallEntry) uint32
		blockOffset *int // the jump to patch to this block
	}{
		{false, func(e syscallEntry) uint32 { return e.nr32 }, nil}, // i386 follows the kill
		{true, func(e syscallEntry) uint32 { return e.nr64 }, &x86},
	}
	for _, abi := range abis {
		if abi.blockOffset != nil {
			p[*abi.blockOffset].K = uint32(len(p) - *abi.blockOffset - 1)
		}
		p.stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, 0) // nr
		if abi.x32 {
			p.jump(unix.BPF_JMP|unix.BPF_JSET|unix.BPF_K, x32Bit, 0, 1)
			p.ret(errnoAction(unix.ENOSYS))
		}
		var err error
		if mode == SeccompRetain {
			err = p.retain(abi.nr, calls, errno)
		} else {
			err = p.remove(abi.nr, calls, errno)
		}
		if err != nil {
			return nil, err
		}
	}
	if len(p) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("seccomp: the filter needs %d instructions, more than the kernel's %d", len(p), unix.BPF_MAXINSNS)
	}
	return p, nil
}

// retain allows the listed calls and startSyscalls, and answers errno to
// everything else.
func (p *prog) retain(nr func(syscallEntry) uint32, calls []string, errno syscall.Errno) error {
	nrs, err := numbers(nr, append(slices.Clone(startSyscalls), calls...))
	if err != nil {
		return err
	}
	for _, n := range nrs {
		p.jumpRet(n, unix.SECCOMP_RET_ALLOW)
	}
	p.ret(errnoAction(errno))
	return nil
}

// remove answers errno to the listed calls, then applies the default
// filter.
func (p *prog) remove(nr func(syscallEntry) uint32, calls []string, errno syscall.Errno) error {
	listed, err := numbers(nr, calls)
	if err != nil {
		return err
	}
	for _, n := range listed {
		p.jumpRet(n, errnoAction(errno))
	}
	clone3, _ := lookupSyscall("clone3")
	if n := nr(clone3); !slices.Contains(listed, n) {
		p.jumpRet(n, errnoAction(unix.ENOSYS))
	}
	clone, _ := lookupSyscall("clone")
	if n := nr(clone); !slices.Contains(listed, n) {
		p.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, n, 0, 4)
		p.stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, 16) // low word of args[0], the flags
		p.jump(unix.BPF_JMP|unix.BPF_JSET|unix.BPF_K, namespaceFlags, 0, 1)
		p.ret(errnoAction(unix.EPERM))
		p.ret(unix.SECCOMP_RET_ALLOW)
	}
	denied, err := numbers(nr, deniedSyscalls)
	if err != nil {
		return err
	}
	for _, n := range denied {
		if !slices.Contains(listed, n) {
			p.jumpRet(n, errnoAction(unix.EPERM))
		}
	}
	p.ret(unix.SECCOMP_RET_ALLOW)
	return nil
}

// numbers maps names to one ABI's numbers, sorted and without
// duplicates, skipping calls the ABI lacks.
func numbers(nr func(syscallEntry) uint32, names []string) ([]uint32, error) {
	out := make([]uint32, 0, len(names))
	for _, name := range names {
		e, ok := lookupSyscall(name)
		if !ok {
			return nil, fmt.Errorf("seccomp: unknown system call %q", name)
		}
		if n := nr(e); n != noSyscall {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// namespaceFlags are the clone flags that create namespaces.
const namespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

const x32Bit = 0x40000000

func errnoAction(e syscall.Errno) uint32 {
	return unix.SECCOMP_RET_ERRNO | uint32(e)&unix.SECCOMP_RET_DATA
}

// prog is a classic BPF program under construction. Every jump is short
// and forward: a rule is a comparison followed by its return.
type prog []unix.SockFilter

func (p *prog) stmt(code uint16, k uint32) {
	*p = append(*p, unix.SockFilter{Code: code, K: k})
}

func (p *prog) jump(code uint16, k uint32, jt, jf uint8) {
	*p = append(*p, unix.SockFilter{Code: code, K: k, Jt: jt, Jf: jf})
}

func (p *prog) ret(action uint32) { p.stmt(unix.BPF_RET|unix.BPF_K, action) }

// jumpRet returns action when the loaded number is n.
func (p *prog) jumpRet(n, action uint32) {
	p.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, n, 0, 1)
	p.ret(action)
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

// EncodeSeccomp turns a program into bytes (8 per instruction, the
// kernel's struct sock_filter), to hand it to another process.
func EncodeSeccomp(prog []unix.SockFilter) []byte {
	if len(prog) == 0 {
		return nil
	}
	return slices.Clone(unsafe.Slice((*byte)(unsafe.Pointer(&prog[0])), len(prog)*int(unsafe.Sizeof(prog[0]))))
}

// DecodeSeccomp is the inverse of EncodeSeccomp.
func DecodeSeccomp(b []byte) ([]unix.SockFilter, error) {
	size := int(unsafe.Sizeof(unix.SockFilter{}))
	if len(b)%size != 0 || len(b)/size > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("seccomp: a program of %d bytes is not a whole number of instructions", len(b))
	}
	prog := make([]unix.SockFilter, len(b)/size)
	if len(prog) > 0 {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&prog[0])), len(b)), b)
	}
	return prog, nil
}
