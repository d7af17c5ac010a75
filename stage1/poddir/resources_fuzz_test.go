package poddir

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
)

// FuzzResourceFlags checks the parsers of --memory and --cpu: what they
// accept is within their ranges, is exactly what was written (no rounding,
// truncation or overflow: 0.0001 cores must not become 0, "no limit"),
// and reads the same written back in each of the flag's forms; a limit
// that Validate accepts is one the kernel applies as given (a whole page,
// at least 1 ms of CPU per period). Refusals name the valid range.
func FuzzResourceFlags(f *testing.F) {
	for _, s := range [][2]string{
		{"256M", "500m"}, {"1G", "1.5"}, {"1Gi", "0.25"}, {"64kib", "1000"}, {"4194304", "0.001"},
		{"0", "0.0001"}, {"-1", "-1"}, {"NaN", "NaN"}, {"1e9", "1e3"}, {"+5", "+1"}, {" 1g ", " 1 "},
		{"1ib", "0x10"}, {"9223372036854775807", "9223372036854775807m"}, {"1048577G", "1000.0001"},
		{"4095", "0.0015"}, {"", ""}, {"m", "m"}, {"5bi", ".5"}, {"1.5G", "5."},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, mem, cpu string) {
		if v, err := ParseBytes(mem); err != nil {
			if !strings.Contains(err.Error(), "from 1 to") {
				t.Fatalf("ParseBytes(%q): %v does not give the range", mem, err)
			}
		} else {
			if v < 1 || v > MaxMemoryBytes {
				t.Fatalf("ParseBytes(%q) = %d, outside 1..%d", mem, v, int64(MaxMemoryBytes))
			}
			if d := strings.TrimSpace(mem); allDigits(d) {
				if n, err := strconv.ParseInt(d, 10, 64); err != nil || n != v {
					t.Fatalf("ParseBytes(%q) = %d, not the number written", mem, v)
				}
			}
			for _, form := range []struct {
				unit int64
				s    string
			}{{1, "%d"}, {1 << 10, "%dk"}, {1 << 20, "%dM"}, {1 << 30, "%dGi"}} {
				if v%form.unit == 0 {
					back := fmt.Sprintf(form.s, v/form.unit)
					if again, err := ParseBytes(back); err != nil || again != v {
						t.Fatalf("ParseBytes(%q) = %d, but %q reads %d, %v", mem, v, back, again, err)
					}
				}
			}
			if err := (Resources{MemoryBytes: v}).Validate(); err == nil && (v < MinMemoryBytes || v%int64(os.Getpagesize()) != 0) {
				t.Fatalf("--memory %q: Validate accepts %d bytes", mem, v)
			}
		}
		v, err := ParseMillicores(cpu)
		if err != nil {
			if !strings.Contains(err.Error(), "from 1m to") {
				t.Fatalf("ParseMillicores(%q): %v does not give the range", cpu, err)
			}
			return
		}
		if v < 1 || v > MaxCPUMillis {
			t.Fatalf("ParseMillicores(%q) = %d, outside 1..%d", cpu, v, MaxCPUMillis)
		}
		if cores, err := strconv.ParseFloat(cpu, 64); err == nil && !strings.HasSuffix(cpu, "m") {
			if m := cores * 1000; math.Abs(m-float64(v)) > 1e-6*math.Max(1, m) {
				t.Fatalf("ParseMillicores(%q) = %d millicores, not the %v written", cpu, v, m)
			}
		}
		for _, back := range []string{fmt.Sprintf("%dm", v), fmt.Sprintf("%d.%03d", v/1000, v%1000)} {
			if again, err := ParseMillicores(back); err != nil || again != v {
				t.Fatalf("ParseMillicores(%q) = %d, but %q reads %d, %v", cpu, v, back, again, err)
			}
		}
		if err := (Resources{CPUMillis: v}).Validate(); err == nil && v < MinCPUMillis {
			t.Fatalf("--cpu %q: Validate accepts %d millicores, below the kernel's 1 ms quota", cpu, v)
		} else if err != nil && !strings.Contains(err.Error(), "use ") {
			t.Fatalf("--cpu %q: %v does not give the range", cpu, err)
		}
	})
}
