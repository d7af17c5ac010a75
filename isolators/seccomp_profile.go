package isolators

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/internal/strictjson"
)

// A seccomp profile in the OCI runtime-spec format (the "seccomp" object of
// config.json's "linux", which is what a CRI Localhost profile file holds):
// a default action, the architectures, and rules of system call names with
// an action and optional argument comparisons. It is compiled here, by the
// same program builder as the default filter, into one classic BPF program:
// for each architecture, the rules in the order given (the first that
// matches decides), then the default action. Within a rule the argument
// comparisons must all hold; a rule that compares one argument more than
// once holds when any of those comparisons does (as runc reads it). Names
// this table does not know (calls of other architectures) are skipped, as
// libseccomp skips them. x32 calls answer ENOSYS and architectures not
// listed are killed, as by the default filter.

// SeccompProfileMode is Seccomp.Mode for a profile (Seccomp.Profile).
const SeccompProfileMode = "profile"

// MaxSeccompProfile is the largest profile file read, in bytes.
const MaxSeccompProfile = 1 << 20

// SeccompProfile is an OCI seccomp profile.
type SeccompProfile struct {
	DefaultAction   string        `json:"defaultAction"`
	DefaultErrnoRet *uint32       `json:"defaultErrnoRet,omitempty"`
	Architectures   []string      `json:"architectures,omitempty"`
	Flags           []string      `json:"flags,omitempty"`
	Syscalls        []SeccompRule `json:"syscalls,omitempty"`
}

// SeccompRule is one rule of a profile.
type SeccompRule struct {
	Names    []string     `json:"names"`
	Action   string       `json:"action"`
	ErrnoRet *uint32      `json:"errnoRet,omitempty"`
	Args     []SeccompArg `json:"args,omitempty"`
}

// SeccompArg compares argument Index (0 to 5) with Value (and ValueTwo:
// for SCMP_CMP_MASKED_EQ, Value is the mask and ValueTwo the value the
// masked argument must equal).
type SeccompArg struct {
	Index    uint32 `json:"index"`
	Value    uint64 `json:"value"`
	ValueTwo uint64 `json:"valueTwo,omitempty"`
	Op       string `json:"op"`
}

// profileFile is what a profile file may hold: the OCI fields, and the
// fields of the Docker format that carry no rule ("comment", "archMap").
type profileFile struct {
	SeccompProfile
	ListenerPath     string          `json:"listenerPath,omitempty"`
	ListenerMetadata string          `json:"listenerMetadata,omitempty"`
	ArchMap          json.RawMessage `json:"archMap,omitempty"`
	Comment          string          `json:"comment,omitempty"`
	Syscalls         []ruleFile      `json:"syscalls,omitempty"`
}

type ruleFile struct {
	SeccompRule
	Name     string          `json:"name,omitempty"` // older profiles: one name
	Comment  string          `json:"comment,omitempty"`
	Includes json.RawMessage `json:"includes,omitempty"`
	Excludes json.RawMessage `json:"excludes,omitempty"`
}

// seccompActions are the actions of a profile, as return values.
var seccompActions = map[string]uint32{
	"SCMP_ACT_KILL":         unix.SECCOMP_RET_KILL_THREAD,
	"SCMP_ACT_KILL_THREAD":  unix.SECCOMP_RET_KILL_THREAD,
	"SCMP_ACT_KILL_PROCESS": unix.SECCOMP_RET_KILL_PROCESS,
	"SCMP_ACT_TRAP":         unix.SECCOMP_RET_TRAP,
	"SCMP_ACT_ERRNO":        unix.SECCOMP_RET_ERRNO,
	"SCMP_ACT_TRACE":        unix.SECCOMP_RET_TRACE,
	"SCMP_ACT_ALLOW":        unix.SECCOMP_RET_ALLOW,
	"SCMP_ACT_LOG":          unix.SECCOMP_RET_LOG,
}

// seccompArches are the architectures a profile may name; those this
// machine kind runs (x86-64, i386, x32) are filtered, the others can
// never run here and are accepted as listed.
var seccompArches = map[string]bool{
	"SCMP_ARCH_X86_64": true, "SCMP_ARCH_X86": true, "SCMP_ARCH_X32": true,
	"SCMP_ARCH_AARCH64": true, "SCMP_ARCH_ARM": true, "SCMP_ARCH_MIPS": true, "SCMP_ARCH_MIPS64": true,
	"SCMP_ARCH_MIPS64N32": true, "SCMP_ARCH_MIPSEL": true, "SCMP_ARCH_MIPSEL64": true, "SCMP_ARCH_MIPSEL64N32": true,
	"SCMP_ARCH_PPC": true, "SCMP_ARCH_PPC64": true, "SCMP_ARCH_PPC64LE": true, "SCMP_ARCH_S390": true,
	"SCMP_ARCH_S390X": true, "SCMP_ARCH_PARISC": true, "SCMP_ARCH_PARISC64": true, "SCMP_ARCH_RISCV64": true,
	"SCMP_ARCH_LOONGARCH64": true, "SCMP_ARCH_M68K": true, "SCMP_ARCH_SH": true, "SCMP_ARCH_SHEB": true,
}

// seccompFlags are the filter flags a profile may give; none changes what
// the filter answers, and karman loads it without them.
var seccompFlags = map[string]bool{
	"SECCOMP_FILTER_FLAG_TSYNC": true, "SECCOMP_FILTER_FLAG_LOG": true, "SECCOMP_FILTER_FLAG_SPEC_ALLOW": true,
	"SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": true,
}

var seccompOps = []string{"SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"}

// Limits of a profile, beyond which it is refused rather than compiled.
const (
	maxSeccompRules = 4096
	maxSeccompNames = 8192
)

// ParseSeccompProfile reads an OCI seccomp profile and checks it: known
// actions, architectures, flags and operators, errno values of 1 to 4095,
// arguments 0 to 5, no notification (SCMP_ACT_NOTIFY, listenerPath) and
// no conditional rules of the Docker format (includes, excludes); names
// are the kernel's, those of other architectures skipped. Every problem
// is reported; the profile must compile within the kernel's 4096
// instructions.
func ParseSeccompProfile(b []byte) (*Seccomp, error) {
	if len(b) > MaxSeccompProfile {
		return nil, fmt.Errorf("seccomp profile of %d bytes: at most %d", len(b), MaxSeccompProfile)
	}
	// No member twice (nor twice in differing case): which of the two
	// would count is the decoder's choice, not the profile's.
	if err := strictjson.Check(b); err != nil {
		return nil, fmt.Errorf("seccomp profile: %s", oneLine(err))
	}
	var f profileFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("seccomp profile: %s (give the OCI format: defaultAction, architectures, syscalls)", oneLine(err))
	}
	if dec.More() {
		return nil, errors.New("seccomp profile: data after the JSON object")
	}
	p := f.SeccompProfile
	p.Syscalls = nil
	// Empty lists read as none, so that the profile encodes to itself.
	if len(p.Architectures) == 0 {
		p.Architectures = nil
	}
	if len(p.Flags) == 0 {
		p.Flags = nil
	}
	var errs []error
	if f.ListenerPath != "" || f.ListenerMetadata != "" {
		errs = append(errs, errors.New("a seccomp notification listener (listenerPath) is not supported"))
	}
	if err := checkAction(p.DefaultAction, p.DefaultErrnoRet); err != nil {
		errs = append(errs, fmt.Errorf("defaultAction: %w", err))
	}
	for _, a := range p.Architectures {
		if !seccompArches[a] {
			errs = append(errs, fmt.Errorf("architecture %q: use names such as SCMP_ARCH_X86_64, SCMP_ARCH_X86, SCMP_ARCH_X32", clip(a)))
		}
	}
	for _, fl := range p.Flags {
		if !seccompFlags[fl] {
			errs = append(errs, fmt.Errorf("flag %q is not supported (known: SECCOMP_FILTER_FLAG_TSYNC, _LOG, _SPEC_ALLOW)", clip(fl)))
		}
	}
	if len(f.Syscalls) > maxSeccompRules {
		errs = append(errs, fmt.Errorf("%d rules: at most %d", len(f.Syscalls), maxSeccompRules))
		f.Syscalls = nil
	}
	names := 0
	for i, r := range f.Syscalls {
		rule := r.SeccompRule
		rule.Names = slices.Clone(rule.Names)
		if r.Name != "" {
			rule.Names = append(rule.Names, r.Name)
		}
		where := fmt.Sprintf("syscalls[%d]", i)
		if len(r.Includes) > 0 && string(r.Includes) != "{}" && string(r.Includes) != "null" ||
			len(r.Excludes) > 0 && string(r.Excludes) != "{}" && string(r.Excludes) != "null" {
			errs = append(errs, fmt.Errorf("%s: conditional rules (includes, excludes) are the Docker format's; give the profile as the runtime receives it, in the OCI format", where))
		}
		if len(rule.Names) == 0 {
			errs = append(errs, fmt.Errorf("%s: a rule names at least one system call", where))
		}
		names += len(rule.Names)
		var known []string
		for _, n := range rule.Names {
			if !validSyscallName(n) {
				errs = append(errs, fmt.Errorf("%s: system call name %q: names are lower-case letters, digits and '_'", where, clip(n)))
				continue
			}
			if _, ok := lookupSyscall(n); ok && !slices.Contains(known, n) {
				known = append(known, n)
			}
		}
		rule.Names = known
		if len(rule.Args) == 0 {
			rule.Args = nil
		}
		if err := checkAction(rule.Action, rule.ErrnoRet); err != nil {
			errs = append(errs, fmt.Errorf("%s: action: %w", where, err))
		}
		if len(rule.Args) > 6 {
			errs = append(errs, fmt.Errorf("%s: %d argument comparisons: at most 6", where, len(rule.Args)))
		}
		for _, a := range rule.Args {
			if a.Index > 5 {
				errs = append(errs, fmt.Errorf("%s: argument index %d: system calls have arguments 0 to 5", where, a.Index))
			}
			if !slices.Contains(seccompOps, a.Op) {
				errs = append(errs, fmt.Errorf("%s: operator %q: use one of %s", where, clip(a.Op), strings.Join(seccompOps, ", ")))
			}
		}
		if len(known) > 0 {
			p.Syscalls = append(p.Syscalls, rule)
		}
	}
	if names > maxSeccompNames {
		errs = append(errs, fmt.Errorf("%d system call names: at most %d", names, maxSeccompNames))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("seccomp profile: %w", errors.Join(errs...))
	}
	s := &Seccomp{Mode: SeccompProfileMode, Profile: &p}
	if _, err := s.Program(); err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	return s, nil
}

// oneLine keeps a decoding error on one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// clip quotes at most 64 bytes of what a profile said.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

func validSyscallName(n string) bool {
	if n == "" || len(n) > 64 {
		return false
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// checkAction checks an action and its errno.
func checkAction(action string, errnoRet *uint32) error {
	if action == "SCMP_ACT_NOTIFY" {
		return errors.New("SCMP_ACT_NOTIFY is not supported (no notification listener)")
	}
	if _, ok := seccompActions[action]; !ok {
		return fmt.Errorf("%q: use SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_TRAP, SCMP_ACT_TRACE or SCMP_ACT_LOG", clip(action))
	}
	if errnoRet != nil {
		if action != "SCMP_ACT_ERRNO" && action != "SCMP_ACT_TRACE" {
			return fmt.Errorf("an errno is for SCMP_ACT_ERRNO and SCMP_ACT_TRACE, not %s", action)
		}
		if *errnoRet > 4095 {
			return fmt.Errorf("errno %d: use 0 to 4095", *errnoRet)
		}
	}
	return nil
}

// actionValue is an action as the filter returns it; ERRNO and TRACE
// carry errnoRet, EPERM when not given.
func actionValue(action string, errnoRet *uint32) uint32 {
	v := seccompActions[action]
	if v == unix.SECCOMP_RET_ERRNO || v == unix.SECCOMP_RET_TRACE {
		data := uint32(unix.EPERM)
		if errnoRet != nil {
			data = *errnoRet
		}
		v |= data & unix.SECCOMP_RET_DATA
	}
	return v
}

// program compiles the profile.
func (p *SeccompProfile) program() ([]unix.SockFilter, error) {
	i386Listed := slices.Contains(p.Architectures, "SCMP_ARCH_X86")
	var out prog
	out.stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, 4) // arch
	out.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, unix.AUDIT_ARCH_X86_64, 0, 1)
	out.stmt(unix.BPF_JMP|unix.BPF_JA, 0) // to the x86-64 block, patched below
	x86 := len(out) - 1
	if i386Listed {
		out.jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, unix.AUDIT_ARCH_I386, 1, 0)
	}
	out.ret(unix.SECCOMP_RET_KILL_PROCESS)
	if i386Listed {
		if err := p.block(&out, func(e syscallEntry) uint32 { return e.nr32 }, false); err != nil {
			return nil, err
		}
	}
	out[x86].K = uint32(len(out) - x86 - 1)
	if err := p.block(&out, func(e syscallEntry) uint32 { return e.nr64 }, true); err != nil {
		return nil, err
	}
	if len(out) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("the filter needs %d instructions, more than the kernel's %d: give fewer rules", len(out), unix.BPF_MAXINSNS)
	}
	return out, nil
}

// block appends one architecture's rules: the call's number is loaded,
// each rule tried in turn, then the default action returned.
func (p *SeccompProfile) block(out *prog, nr func(syscallEntry) uint32, wide bool) error {
	out.stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, 0) // nr
	if wide {
		out.jump(unix.BPF_JMP|unix.BPF_JSET|unix.BPF_K, x32Bit, 0, 1)
		out.ret(errnoAction(unix.ENOSYS))
	}
	for _, r := range p.Syscalls {
		action := actionValue(r.Action, r.ErrnoRet)
		for _, name := range r.Names {
			e, _ := lookupSyscall(name)
			n := nr(e)
			if n == noSyscall {
				continue
			}
			if len(r.Args) == 0 {
				out.jumpRet(n, action)
				continue
			}
			for _, group := range argGroups(r.Args) {
				if err := out.argRule(n, group, action, wide); err != nil {
					return err
				}
				if len(*out) > unix.BPF_MAXINSNS {
					return fmt.Errorf("the filter needs more than the kernel's %d instructions: give fewer rules", unix.BPF_MAXINSNS)
				}
			}
		}
	}
	out.ret(actionValue(p.DefaultAction, p.DefaultErrnoRet))
	return nil
}

// argGroups are a rule's comparisons that must hold together: all of
// them, or each alone when one argument is compared more than once.
func argGroups(args []SeccompArg) [][]SeccompArg {
	seen := map[uint32]bool{}
	for _, a := range args {
		if seen[a.Index] {
			out := make([][]SeccompArg, len(args))
			for i := range args {
				out[i] = args[i : i+1]
			}
			return out
		}
		seen[a.Index] = true
	}
	return [][]SeccompArg{args}
}

// Jump targets of a comparison, before they are resolved.
const (
	toPass = -1 // the next comparison (all held so far)
	toFail = -2 // the end of the rule, where the number is loaded again
)

type cjump struct {
	code   uint16
	k      uint32
	jt, jf int // toPass, toFail, or 0 (the next instruction)
}

// argRule appends a rule with comparisons: the call's number, each
// comparison, the action; a failed one jumps past the action to the
// instruction that loads the number again for the next rule. wide
// compares 64-bit arguments (both words); otherwise only the low word,
// as a 32-bit architecture has it.
func (p *prog) argRule(n uint32, args []SeccompArg, action uint32, wide bool) error {
	var body []cjump
	var ends []int // the end of each comparison: where toPass leads
	body = append(body, cjump{code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, k: n, jf: toFail})
	ends = append(ends, len(body))
	for _, a := range args {
		body = append(body, comparison(a, wide)...)
		ends = append(ends, len(body))
	}
	fail := len(body) + 1 // after the return
	cond := 0
	for i, j := range body {
		for cond < len(ends) && ends[cond] <= i {
			cond++
		}
		resolve := func(t int) (uint8, error) {
			target := i + 1
			switch t {
			case toPass:
				target = ends[cond]
			case toFail:
				target = fail
			}
			off := target - i - 1
			if off < 0 || off > 255 {
				return 0, fmt.Errorf("seccomp: a jump of %d instructions", off)
			}
			return uint8(off), nil
		}
		jt, err := resolve(j.jt)
		if err != nil {
			return err
		}
		jf, err := resolve(j.jf)
		if err != nil {
			return err
		}
		*p = append(*p, unix.SockFilter{Code: j.code, K: j.k, Jt: jt, Jf: jf})
	}
	p.ret(action)
	p.stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, 0) // nr again, for the next rule
	return nil
}

// comparison is the code of one argument comparison: it falls through
// (or jumps toPass) when it holds, jumps toFail when not. The argument's
// low word is at 16+8*index of seccomp_data, its high word 4 bytes on.
func comparison(a SeccompArg, wide bool) []cjump {
	lo, hi := 16+8*a.Index, 16+8*a.Index+4
	ld := func(off uint32) cjump { return cjump{code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, k: off} }
	and := func(k uint32) cjump { return cjump{code: unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, k: k} }
	j := func(op uint16, k uint32, jt, jf int) cjump {
		return cjump{code: unix.BPF_JMP | op | unix.BPF_K, k: k, jt: jt, jf: jf}
	}
	v, v2 := a.Value, a.ValueTwo
	vh, vl := uint32(v>>32), uint32(v)
	// The high word decides unless it equals the value's; the low word
	// then does. Without a high word (32-bit), only the low one.
	var out []cjump
	switch a.Op {
	case "SCMP_CMP_EQ":
		if wide {
			out = append(out, ld(hi), j(unix.BPF_JEQ, vh, 0, toFail))
		}
		return append(out, ld(lo), j(unix.BPF_JEQ, vl, 0, toFail))
	case "SCMP_CMP_NE":
		if wide {
			out = append(out, ld(hi), j(unix.BPF_JEQ, vh, 0, toPass))
		}
		return append(out, ld(lo), j(unix.BPF_JEQ, vl, toFail, 0))
	case "SCMP_CMP_GT", "SCMP_CMP_GE":
		low := unix.BPF_JGT
		if a.Op == "SCMP_CMP_GE" {
			low = unix.BPF_JGE
		}
		if wide {
			out = append(out, ld(hi), j(unix.BPF_JGT, vh, toPass, 0), j(unix.BPF_JEQ, vh, 0, toFail))
		}
		return append(out, ld(lo), j(uint16(low), vl, 0, toFail))
	case "SCMP_CMP_LT", "SCMP_CMP_LE":
		// lo < vl is not (lo >= vl); lo <= vl is not (lo > vl).
		low := unix.BPF_JGE
		if a.Op == "SCMP_CMP_LE" {
			low = unix.BPF_JGT
		}
		if wide {
			out = append(out, ld(hi), j(unix.BPF_JGT, vh, toFail, 0), j(unix.BPF_JEQ, vh, 0, toPass))
		}
		return append(out, ld(lo), j(uint16(low), vl, toFail, 0))
	case "SCMP_CMP_MASKED_EQ":
		mh, ml, dh, dl := uint32(v>>32), uint32(v), uint32(v2>>32), uint32(v2)
		if wide {
			out = append(out, ld(hi), and(mh), j(unix.BPF_JEQ, dh, 0, toFail))
		}
		return append(out, ld(lo), and(ml), j(unix.BPF_JEQ, dl, 0, toFail))
	}
	panic("seccomp: unchecked operator " + a.Op)
}
