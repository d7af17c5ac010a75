package isolators

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// FuzzSeccomp checks --seccomp end to end: a value ParseSeccomp accepts
// builds a program (Program never refuses what the parser let through)
// within the kernel's size limit, that survives EncodeSeccomp and
// DecodeSeccomp, and that, run by the interpreter of the tests, answers
// each listed call as the mode says (remove: the errno; retain: allowed)
// and a few calls that are not listed as the default filter or the retain
// list says, on both ABIs, kills other architectures and answers x32
// calls ENOSYS. The accepted setting, written back as a flag value, parses
// to the same setting.
func FuzzSeccomp(f *testing.F) {
	for _, s := range []string{
		"unconfined", "mode=remove,keyctl", "mode=remove,errno=ENOTSUP,chmod,keyctl,clone3,clone",
		"mode=retain,read,WRITE,mmap,unshare,mmap2", "mode=retain,errno=eacces,execve", " mode=retain , exit ",
		"mode=remove", "mode=retain", "unconfined,errno=EPERM", "mode=remove,mode=retain,read", "errno=EFOO,read",
		"mode=remove,,read", "mode=remove,nosuchcall", "read,mode=remove", "mode=sometimes,read", "x=y",
		"mode=retain,errno=EWOULDBLOCK,clone,clone3,unshare,mount", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		s, err := ParseSeccomp(value)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "--seccomp ") {
				t.Fatalf("ParseSeccomp(%q): %v does not name the flag", value, err)
			}
			return
		}
		p, err := s.Program()
		if err != nil {
			t.Fatalf("ParseSeccomp(%q) accepted %+v, but Program refuses it: %v", value, s, err)
		}
		flag := "unconfined"
		if s.Mode != SeccompUnconfined {
			flag = "mode=" + s.Mode
			if s.Errno != "" {
				flag += ",errno=" + s.Errno
			}
			flag += "," + strings.Join(s.Syscalls, ",")
		}
		again, err := ParseSeccomp(flag)
		if err != nil || !cmp.Equal(s, again) {
			t.Fatalf("ParseSeccomp(%q) = %+v, written back as %q parses to %+v, %v", value, s, flag, again, err)
		}
		if s.Mode == SeccompUnconfined {
			if p != nil {
				t.Fatalf("unconfined has a program of %d instructions", len(p))
			}
			return
		}
		if len(p) == 0 || len(p) > unix.BPF_MAXINSNS {
			t.Fatalf("a program of %d instructions", len(p))
		}
		if d, err := DecodeSeccomp(EncodeSeccomp(p)); err != nil || !slices.Equal(d, p) {
			t.Fatalf("the program does not survive encoding: %v", err)
		}
		e := unix.EPERM
		if s.Errno != "" {
			if e, err = ParseErrno(s.Errno); err != nil {
				t.Fatal(err)
			}
		}
		var listedWant, otherWant uint32 = errno(e), allow
		if s.Mode == SeccompRetain {
			listedWant, otherWant = allow, errno(e)
		}
		for _, arch := range []uint32{x8664, i386} {
			for _, name := range s.Syscalls {
				n := nr(t, name, arch)
				if n == noSyscall {
					continue
				}
				if got := run(t, p, arch, n); got != listedWant && !(s.Mode == SeccompRetain && slices.Contains(startSyscalls, name)) {
					t.Fatalf("%s: listed call %s on arch %#x answers %#x, want %#x", flag, name, arch, got, listedWant)
				}
			}
			for _, name := range []string{"getppid", "openat", "fchmodat"} {
				if n := nr(t, name, arch); n != noSyscall && !slices.Contains(s.Syscalls, name) {
					if got := run(t, p, arch, n); got != otherWant {
						t.Fatalf("%s: unlisted call %s on arch %#x answers %#x, want %#x", flag, name, arch, got, otherWant)
					}
				}
			}
			if s.Mode == SeccompRemove && !slices.Contains(s.Syscalls, "keyctl") {
				if got := run(t, p, arch, nr(t, "keyctl", arch)); got != errno(unix.EPERM) {
					t.Fatalf("%s: keyctl, refused by the default filter, answers %#x on arch %#x", flag, got, arch)
				}
			}
		}
		if got := run(t, p, unix.AUDIT_ARCH_AARCH64, 0); got != kill {
			t.Fatalf("%s: another architecture gets %#x, not kill", flag, got)
		}
		if got := run(t, p, x8664, x32Bit|1); got != errno(unix.ENOSYS) {
			t.Fatalf("%s: an x32 call gets %#x, not ENOSYS", flag, got)
		}
	})
}
