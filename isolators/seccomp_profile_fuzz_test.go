package isolators

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// FuzzSeccompProfile checks ParseSeccompProfile on hostile JSON: refusals
// name the profile; an accepted profile compiles (Program never refuses
// what the parser let through) within the kernel's 4096 instructions,
// survives encoding, and, encoded as JSON again, parses to the same
// setting. Interpreted, the program answers each call that a rule without
// comparisons names first with that rule's action, a call no rule names
// with the default action, on each architecture the profile filters;
// other architectures are killed and x32 calls get ENOSYS.
func FuzzSeccompProfile(f *testing.F) {
	for _, s := range []string{
		`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}]}`,
		`{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
		  "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
		  {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]},
		  {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 4294967295, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
		  {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 1, "value": 0, "valueTwo": 4294443006, "op": "SCMP_CMP_MASKED_EQ"}]}]}`,
		`{"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": [{"name": "read", "action": "SCMP_ACT_ALLOW", "comment": "old form"}], "archMap": [], "comment": "docker"}`,
		`{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"], "syscalls": [{"names": ["arm_fadvise64_64", "getpid"], "action": "SCMP_ACT_TRAP"}]}`,
		`{"defaultAction": "SCMP_ACT_NOTIFY"}`, `{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x"}`, `{}`, `null`, `[]`, `{"defaultAction": "SCMP_ACT_ALLOW"}x`,
		`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 9, "op": "SCMP_CMP_EQ"}]}]}`,
		`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}}]}`,
		// Found by the fuzzer: empty lists and members in other case
		// must encode to the same profile; a member twice is refused.
		`{"defAultACtion": "SCMP_ACT_ERRNO","sYsCAlls":[{"nAmes":["personality"],"ACtion":"SCMP_ACT_ALLOW","Args":[]}], "architectures": []}`,
		`{"defaultAction": "SCMP_ACT_ALLOW", "DefaultAction": "SCMP_ACT_KILL"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSeccompProfile(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "seccomp profile") {
				t.Fatalf("the refusal %q does not name the profile", err)
			}
			return
		}
		p, err := s.Program()
		if err != nil {
			t.Fatalf("accepted, but Program refuses it: %v", err)
		}
		if len(p) == 0 || len(p) > unix.BPF_MAXINSNS {
			t.Fatalf("a program of %d instructions", len(p))
		}
		if d, err := DecodeSeccomp(EncodeSeccomp(p)); err != nil || !slices.Equal(d, p) {
			t.Fatalf("the program does not survive encoding: %v", err)
		}
		js, err := json.Marshal(s.Profile)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseSeccompProfile(js)
		if err != nil || !cmp.Equal(s, again) {
			t.Fatalf("%s parses to %+v, encoded again as %s to %+v, %v", b, s.Profile, js, again, err)
		}
		prof := s.Profile
		arches := []uint32{x8664}
		if slices.Contains(prof.Architectures, "SCMP_ARCH_X86") {
			arches = append(arches, i386)
		} else if got := run(t, p, i386, 1); got != kill {
			t.Fatalf("i386, not listed, answers %#x", got)
		}
		for _, arch := range arches {
			decided := map[uint32]bool{}
			for _, r := range prof.Syscalls {
				for _, name := range r.Names {
					n := nr(t, name, arch)
					if n == noSyscall || decided[n] {
						continue
					}
					if len(r.Args) > 0 {
						decided[n] = true // the arguments decide; not checked here
						continue
					}
					decided[n] = true
					if got, want := run(t, p, arch, n), actionValue(r.Action, r.ErrnoRet); got != want {
						t.Fatalf("arch %#x: %s answers %#x, want %#x", arch, name, got, want)
					}
				}
			}
			for _, name := range []string{"getppid", "openat", "fchmodat", "read", "kill"} {
				if n := nr(t, name, arch); n != noSyscall && !decided[n] {
					if got, want := run(t, p, arch, n, 1, 2, 3), actionValue(prof.DefaultAction, prof.DefaultErrnoRet); got != want {
						t.Fatalf("arch %#x: %s, named by no rule, answers %#x, want the default %#x", arch, name, got, want)
					}
				}
			}
		}
		if got := run(t, p, unix.AUDIT_ARCH_AARCH64, 0); got != kill {
			t.Fatalf("another architecture gets %#x, not kill", got)
		}
		if got := run(t, p, x8664, x32Bit|1); got != errno(unix.ENOSYS) {
			t.Fatalf("an x32 call gets %#x, not ENOSYS", got)
		}
	})
}
