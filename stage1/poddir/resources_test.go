package poddir

import (
	"strings"
	"testing"
)

func TestResourcesValidate(t *testing.T) {
	tests := []struct {
		name string
		r    Resources
		want []string // each a problem the error names; none: valid
	}{
		{"none", Resources{}, nil},
		{"least", Resources{MemoryBytes: MinMemoryBytes, CPUMillis: MinCPUMillis, CPUShares: MinCPUShares, PidsLimit: 1}, nil},
		{"most", Resources{MemoryBytes: MaxMemoryBytes, CPUMillis: MaxCPUMillis, CPUShares: MaxCPUShares, PidsLimit: MaxPidsLimit}, nil},
		{"memory below", Resources{MemoryBytes: 1 << 20}, []string{"memory limit 1048576 bytes", "4 MiB to 1 PiB"}},
		{"memory above", Resources{MemoryBytes: MaxMemoryBytes + 4096}, []string{"4 MiB to 1 PiB"}},
		{"memory negative", Resources{MemoryBytes: -1}, []string{"4 MiB to 1 PiB"}},
		{"memory off the page", Resources{MemoryBytes: 5000000}, []string{"multiple of the 4096-byte page", "use 4997120 or 5001216"}},
		// 1 ms of 100 ms is the kernel's least quota: 5m would be 10m.
		{"cpu below the least quota", Resources{CPUMillis: 5}, []string{"CFS quota", "10 to 1000000 millicores"}},
		{"cpu above", Resources{CPUMillis: MaxCPUMillis + 1}, []string{"10 to 1000000 millicores"}},
		{"cpu negative", Resources{CPUMillis: -100}, []string{"10 to 1000000 millicores"}},
		{"shares 1 (the kernel makes it 2)", Resources{CPUShares: 1}, []string{"2 to 262144"}},
		{"shares above", Resources{CPUShares: 1 << 40}, []string{"2 to 262144"}},
		{"pids negative", Resources{PidsLimit: -1}, []string{"1 to 4194304"}},
		{"pids above", Resources{PidsLimit: MaxPidsLimit + 1}, []string{"1 to 4194304"}},
		{"every problem", Resources{MemoryBytes: 1, CPUMillis: 1, CPUShares: 1, PidsLimit: -1}, []string{"memory", "CPU limit", "CPU shares", "pids"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("%+v refused: %v", tc.r, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("%+v accepted", tc.r)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not say %q", err, w)
				}
			}
		})
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"4096": 4096, "64k": 64 << 10, "256M": 256 << 20, "1G": 1 << 30, "2Gi": 2 << 30, "512mb": 512 << 20, "1GiB": 1 << 30, "1048576G": MaxMemoryBytes} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "0", "+5M", "1T", "lots", "9999999999G", "1048577G", "1.5G", "NaN", "1e9", "0x10", " 1 M", "9223372036854775807", "99999999999999999999"} {
		if n, err := ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q) = %d, accepted", bad, n)
		} else if !strings.Contains(err.Error(), "1048576G") {
			t.Errorf("ParseBytes(%q): %q does not name the range", bad, err)
		}
	}
}

func TestParseMillicores(t *testing.T) {
	for in, want := range map[string]int64{"500m": 500, "1": 1000, "1.5": 1500, "0.25": 250, "0.010": 10, "1.2500": 1250, "1000": MaxCPUMillis, "1m": 1} {
		if got, err := ParseMillicores(in); err != nil || got != want {
			t.Errorf("ParseMillicores(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	// 0.0001 was 0.1 millicores, truncated to 0: no limit at all.
	for _, bad := range []string{"", "0", "0m", "-1", "abc", "5xm", "0.0001", "0.0015", "NaN", "nan", "Inf", "-Inf", "1e3", "0x1p-2", "+1", "1001", "1000001m", "99999999999999999999m", ".5", "1.5m", " 1"} {
		if n, err := ParseMillicores(bad); err == nil {
			t.Errorf("ParseMillicores(%q) = %d, accepted", bad, n)
		} else if !strings.Contains(err.Error(), "from 1m to 1000 cores") {
			t.Errorf("ParseMillicores(%q): %q does not name the range", bad, err)
		}
	}
}
