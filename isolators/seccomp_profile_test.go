package isolators

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func mustProfile(t *testing.T, js string) []unix.SockFilter {
	t.Helper()
	s, err := ParseSeccompProfile([]byte(js))
	if err != nil {
		t.Fatalf("ParseSeccompProfile: %v", err)
	}
	p, err := s.Program()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSeccompProfileRules: rules answer in order with their action and
// errno, the default action answers the rest, on the architectures
// listed; x32 calls get ENOSYS and other architectures are killed.
func TestSeccompProfileRules(t *testing.T) {
	p := mustProfile(t, `{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
		"syscalls": [
			{"names": ["read", "write", "arm_fadvise64_64"], "action": "SCMP_ACT_ALLOW"},
			{"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
			{"names": ["read"], "action": "SCMP_ACT_KILL_PROCESS"},
			{"names": ["getpid"], "action": "SCMP_ACT_TRAP"},
			{"names": ["gettid"], "action": "SCMP_ACT_LOG"},
			{"names": ["getppid"], "action": "SCMP_ACT_KILL"}
		]}`)
	for _, arch := range []uint32{x8664, i386} {
		for name, want := range map[string]uint32{
			"read": allow, "write": allow, "chmod": errno(unix.ENOSYS), "getpid": unix.SECCOMP_RET_TRAP,
			"gettid": unix.SECCOMP_RET_LOG, "getppid": unix.SECCOMP_RET_KILL_THREAD, "openat": errno(unix.EPERM),
		} {
			if got := run(t, p, arch, nr(t, name, arch)); got != want {
				t.Errorf("arch %#x: %s answers %#x, want %#x", arch, name, got, want)
			}
		}
	}
	if got := run(t, p, unix.AUDIT_ARCH_AARCH64, 0); got != kill {
		t.Errorf("another architecture: %#x", got)
	}
	if got := run(t, p, x8664, x32Bit|1); got != errno(unix.ENOSYS) {
		t.Errorf("an x32 call: %#x", got)
	}
	// Without SCMP_ARCH_X86, i386 is killed.
	p = mustProfile(t, `{"defaultAction": "SCMP_ACT_ALLOW"}`)
	if got := run(t, p, i386, 1); got != kill {
		t.Errorf("i386 not listed: %#x", got)
	}
	if got := run(t, p, x8664, 1); got != allow {
		t.Errorf("x86-64 under an allow default: %#x", got)
	}
}

// TestSeccompProfileArgs: every operator, on both words of a 64-bit
// argument; comparisons of one rule must all hold, those on one argument
// given twice are alternatives.
func TestSeccompProfileArgs(t *testing.T) {
	const big = 1<<32 + 5
	rule := func(op string, v, v2 uint64) string {
		return `{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"], "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
			"args": [{"index": 1, "op": "` + op + `", "value": ` + u64(v) + `, "valueTwo": ` + u64(v2) + `}]}]}`
	}
	denied := errno(unix.EPERM)
	for _, tc := range []struct {
		op     string
		v, v2  uint64
		hits   []uint64
		misses []uint64
	}{
		{"SCMP_CMP_EQ", big, 0, []uint64{big}, []uint64{5, 1 << 32, big + 1}},
		{"SCMP_CMP_NE", big, 0, []uint64{5, 1 << 32, big + 1, 0}, []uint64{big}},
		{"SCMP_CMP_GT", big, 0, []uint64{big + 1, 2 << 32}, []uint64{big, 5, 1<<32 + 4, 0}},
		{"SCMP_CMP_GE", big, 0, []uint64{big, big + 1, 2 << 32}, []uint64{5, 1<<32 + 4}},
		{"SCMP_CMP_LT", big, 0, []uint64{5, 1<<32 + 4, 0}, []uint64{big, big + 1, 2 << 32}},
		{"SCMP_CMP_LE", big, 0, []uint64{big, 5, 0}, []uint64{big + 1, 2 << 32}},
		{"SCMP_CMP_MASKED_EQ", 0xff00000000ff, 0x120000000034, []uint64{0x120000000034, 0x121100001134}, []uint64{0x34, 0x120000000035}},
	} {
		p := mustProfile(t, rule(tc.op, tc.v, tc.v2))
		k := nr(t, "kill", x8664)
		for _, a := range tc.hits {
			if got := run(t, p, x8664, k, 1, a); got != denied {
				t.Errorf("%s %#x: argument %#x answers %#x, want the rule's", tc.op, tc.v, a, got)
			}
		}
		for _, a := range tc.misses {
			if got := run(t, p, x8664, k, 1, a); got != allow {
				t.Errorf("%s %#x: argument %#x answers %#x, want the default", tc.op, tc.v, a, got)
			}
		}
		if got := run(t, p, x8664, nr(t, "getpid", x8664), 1, tc.hits[0]); got != allow {
			t.Errorf("%s: another call with the argument answers %#x", tc.op, got)
		}
	}
	// All of one rule's comparisons; one argument twice: either.
	p := mustProfile(t, `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
		{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "op": "SCMP_CMP_EQ", "value": 7}, {"index": 1, "op": "SCMP_CMP_EQ", "value": 9}]},
		{"names": ["tkill"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "op": "SCMP_CMP_EQ", "value": 3}, {"index": 1, "op": "SCMP_CMP_EQ", "value": 4}]}]}`)
	k, tk := nr(t, "kill", x8664), nr(t, "tkill", x8664)
	for _, c := range []struct {
		nr, a0, a1 uint32
		want       uint32
	}{{k, 7, 9, denied}, {k, 7, 8, allow}, {k, 6, 9, allow}, {tk, 0, 3, denied}, {tk, 0, 4, denied}, {tk, 0, 5, allow}} {
		if got := run(t, p, x8664, c.nr, uint64(c.a0), uint64(c.a1)); got != c.want {
			t.Errorf("call %d (%d, %d): %#x, want %#x", c.nr, c.a0, c.a1, got, c.want)
		}
	}
}

func u64(v uint64) string {
	var b []byte
	if v == 0 {
		return "0"
	}
	for ; v > 0; v /= 10 {
		b = append([]byte{byte('0' + v%10)}, b...)
	}
	return string(b)
}

// TestParseSeccompProfileRefusals: what is refused, each in one line
// naming the problem.
func TestParseSeccompProfileRefusals(t *testing.T) {
	for _, tc := range []struct{ js, want string }{
		{`{"defaultAction": "SCMP_ACT_MAYBE"}`, "SCMP_ACT_MAYBE"},
		{`{"defaultAction": "SCMP_ACT_ALLOW", "unknown": 1}`, "unknown field"},
		{`{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}`, "SCMP_ARCH_Z80"},
		{`{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NEW_LISTENER"]}`, "not supported"},
		{`{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock"}`, "listener"},
		{`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}`, "SCMP_ACT_NOTIFY"},
		{`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5000}]}`, "errno 5000"},
		{`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}]}`, "an errno is for"},
		{`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ALLOW"}]}`, "at least one"},
		{`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["Read!"], "action": "SCMP_ACT_ALLOW"}]}`, "lower-case"},
		{`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "op": "SCMP_CMP_EQ"}]}]}`, "index 6"},
		{`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "op": "SCMP_CMP_ALMOST"}]}]}`, "SCMP_CMP_ALMOST"},
		{`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}}]}`, "Docker format"},
		{`{"defaultAction": "SCMP_ACT_ALLOW"} {}`, "after the JSON"},
		{`{"defaultAction": `, "seccomp profile"},
		{`[]`, "seccomp profile"},
	} {
		_, err := ParseSeccompProfile([]byte(tc.js))
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one error saying %q", tc.js, err, tc.want)
		}
	}
	// A profile too large to compile is refused, not truncated.
	var b strings.Builder
	b.WriteString(`{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"], "syscalls": [`)
	for i := range 1200 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "op": "SCMP_CMP_EQ", "value": 1}]}`)
	}
	b.WriteString("]}")
	if _, err := ParseSeccompProfile([]byte(b.String())); err == nil || !strings.Contains(err.Error(), "instructions") {
		t.Errorf("a profile of 2x1200 rules: %v, want a refusal naming the kernel's instruction limit", err)
	}
}
