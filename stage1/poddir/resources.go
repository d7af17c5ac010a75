package poddir

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// The ranges of Resources. A limit is either applied exactly as given or
// refused with its range: the kernel would silently round or clamp a
// value outside them (a CFS quota below 1 ms becomes 1 ms, shares outside
// 2..262144 are clamped, a memory limit is rounded down to the page), and
// a value that overflows the kernel's units would be no limit at all.
const (
	// MinMemoryBytes is the least memory a process starts in.
	MinMemoryBytes = 4 << 20
	// MaxMemoryBytes (1 PiB) is far above any machine's memory.
	MaxMemoryBytes = 1 << 50
	// MinCPUMillis is the kernel's smallest CFS quota, 1 ms, over the
	// 100 ms period karman uses.
	MinCPUMillis = 10
	// MaxCPUMillis is 1000 cores.
	MaxCPUMillis = 1_000_000
	// MinCPUShares and MaxCPUShares are the kernel's range of cgroup v1
	// cpu.shares (on v2 they map onto cpu.weight 1..10000).
	MinCPUShares = 2
	MaxCPUShares = 262144
	// MaxPidsLimit is the kernel's PID_MAX_LIMIT, the most pids.max takes.
	MaxPidsLimit = 4 << 20
	// MinOOMScoreAdj and MaxOOMScoreAdj bound oom_score_adj.
	MinOOMScoreAdj = -1000
	MaxOOMScoreAdj = 1000
)

// The ranges as they are said in the messages.
const (
	memoryRange = "use 4 MiB to 1 PiB (4194304 to 1125899906842624 bytes), or 0 for no limit"
	cpuRange    = "use 10 to 1000000 millicores (10m to 1000 cores), or 0 for no limit"
	sharesRange = "use 2 to 262144, or 0 for the default weight (1024)"
	pidsRange   = "use 1 to 4194304, or 0 for no limit"
)

// Validate checks every limit of r against its range (zero is "no limit",
// or for CPUShares the default weight) and reports every problem. The CLI
// and the node agent both call it, so that a limit means the same for
// both.
func (r Resources) Validate() error {
	var errs []error
	if m := r.MemoryBytes; m != 0 {
		switch page := int64(os.Getpagesize()); {
		case m < MinMemoryBytes || m > MaxMemoryBytes:
			errs = append(errs, fmt.Errorf("memory limit %d bytes is %s: %s", m, outside(m, MinMemoryBytes, "too little to start a process"), memoryRange))
		case m%page != 0:
			errs = append(errs, fmt.Errorf("memory limit %d bytes is not a multiple of the %d-byte page, which the kernel would round it down to: use %d or %d", m, page, m/page*page, (m/page+1)*page))
		}
	}
	if c := r.CPUMillis; c != 0 && (c < MinCPUMillis || c > MaxCPUMillis) {
		errs = append(errs, fmt.Errorf("CPU limit %d millicores is %s: %s", c, outside(c, MinCPUMillis, "below the kernel's smallest CFS quota (1 ms per 100 ms period)"), cpuRange))
	}
	if s := r.CPUShares; s != 0 && (s < MinCPUShares || s > MaxCPUShares) {
		errs = append(errs, fmt.Errorf("CPU shares %d are outside the kernel's range: %s", s, sharesRange))
	}
	if p := r.PidsLimit; p < 0 || p > MaxPidsLimit {
		errs = append(errs, fmt.Errorf("pids limit %d is %s: %s", p, outside(p, 0, ""), pidsRange))
	}
	return errors.Join(errs...)
}

// outside says why v is out of its range, whose least value is least:
// negative, too small (why, when given) or too large.
func outside(v, least int64, why string) string {
	switch {
	case v < 0:
		return "negative"
	case v < least && why != "":
		return why
	}
	return "out of range"
}

// CheckOOMScoreAdj refuses an oom_score_adj the kernel does not take.
func CheckOOMScoreAdj(v int) error {
	if v < MinOOMScoreAdj || v > MaxOOMScoreAdj {
		return fmt.Errorf("oom_score_adj %d is out of range: use -1000 to 1000", v)
	}
	return nil
}

// ParseBytes reads a size as the --memory flag takes it: 4194304, 64k,
// 256M, 1G or 1Gi (powers of 1024; a trailing b is allowed). It accepts
// 1 byte to MaxMemoryBytes; whether the size suits a limit is Validate's
// to say.
func ParseBytes(s string) (int64, error) {
	bad := fmt.Errorf("%q is not a size: use a whole number of bytes, or of k, M or G such as 256M, from 1 to 1048576G", s)
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), "b"), "i")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k':
			mult, t = 1<<10, t[:n-1]
		case 'm':
			mult, t = 1<<20, t[:n-1]
		case 'g':
			mult, t = 1<<30, t[:n-1]
		}
	}
	if !allDigits(t) {
		return 0, bad
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v <= 0 || v > MaxMemoryBytes/mult {
		return 0, bad
	}
	return v * mult, nil
}

// ParseMillicores reads a CPU amount as the --cpu flag takes it: 500m
// (millicores) or 1.5 (cores), in whole millicores from 1m to
// MaxCPUMillis. Whether the amount suits a limit is Validate's to say.
func ParseMillicores(s string) (int64, error) {
	bad := fmt.Errorf("%q is not a CPU amount: use whole millicores such as 500m, or cores such as 1.5 (at most 3 decimals), from 1m to 1000 cores", s)
	if m, ok := strings.CutSuffix(s, "m"); ok {
		if !allDigits(m) {
			return 0, bad
		}
		v, err := strconv.ParseInt(m, 10, 64)
		if err != nil || v <= 0 || v > MaxCPUMillis {
			return 0, bad
		}
		return v, nil
	}
	whole, frac, _ := strings.Cut(s, ".")
	frac = strings.TrimRight(frac, "0")
	if !allDigits(whole) || (frac != "" && !allDigits(frac)) || len(frac) > 3 || len(whole) > 7 {
		return 0, bad
	}
	w, _ := strconv.ParseInt(whole, 10, 64)
	f := int64(0)
	if frac != "" {
		f, _ = strconv.ParseInt(frac+strings.Repeat("0", 3-len(frac)), 10, 64)
	}
	v := w*1000 + f
	if v <= 0 || v > MaxCPUMillis {
		return 0, bad
	}
	return v, nil
}

// allDigits tells whether s is one or more ASCII digits: no sign, no
// spaces, no exponent, no NaN.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
