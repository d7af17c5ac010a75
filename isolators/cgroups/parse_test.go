package cgroups

import (
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/cgroups/v3"
	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	"github.com/containerd/cgroups/v3/cgroup2"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// Sample /proc/self/cgroup contents.
const (
	// This machine: hybrid, no systemd, a supervisor placed us in a memory cgroup.
	procHybridNoSystemd = `9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/a26913d3b0c6fba75b72f2c300559ebd
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
`
	// Hybrid systemd host, inside karman.service.
	procHybridSystemd = `12:cpu,cpuacct:/system.slice/karman.service
11:memory:/system.slice/karman.service
10:pids:/system.slice/karman.service
1:name=systemd:/system.slice/karman.service
0::/system.slice/karman.service
`
	// Pure v1 systemd host (no 0:: line), service without memory accounting.
	procV1Systemd = `5:memory:/
4:cpu,cpuacct:/
1:name=systemd:/system.slice/karman.service
`
	// Pure v2 systemd host, inside a delegated unit.
	procV2Systemd = "0::/system.slice/karman.service\n"
	// Pure v2 systemd host, the caller already moved itself into its leaf.
	procV2SystemdSelf = "0::/system.slice/karman.service/karman-self\n"
	// Pure v2, caller in the root cgroup (no unit: e.g. started from an init script).
	procV2Root = "0::/\n"
	// Pure v2 user session scope.
	procV2Session = "0::/user.slice/user-1000.slice/session-2.scope\n"
)

func TestParentFor(t *testing.T) {
	tests := []struct {
		name    string
		proc    string
		booted  bool
		want    string
		wantErr bool
	}{
		{"hybrid, no systemd (this machine)", procHybridNoSystemd, false, "/karman", false},
		{"hybrid, systemd booted, caller in root", procHybridNoSystemd, true, "/karman", false},
		{"hybrid, systemd unit", procHybridSystemd, true, "/system.slice/karman.service/karman-pods", false},
		{"v1, systemd unit (name=systemd wins over controllers at /)", procV1Systemd, true, "/system.slice/karman.service/karman-pods", false},
		{"v2, systemd unit", procV2Systemd, true, "/system.slice/karman.service/karman-pods", false},
		{"v2, systemd unit, caller already in karman-self", procV2SystemdSelf, true, "/system.slice/karman.service/karman-pods", false},
		{"v2, root cgroup", procV2Root, true, "/karman", false},
		{"v2, session scope", procV2Session, true, "/user.slice/user-1000.slice/session-2.scope/karman-pods", false},
		{"v2, paths not from systemd (container without systemd)", procV2Systemd, false, "/karman", false},
		{"empty file", "", true, "/karman", false},
		{"malformed", "garbage\n", true, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parentFor(tt.proc, tt.booted)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("parentFor = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseProcCgroup(t *testing.T) {
	e, err := parseProcCgroup(procHybridSystemd)
	if err != nil {
		t.Fatal(err)
	}
	if len(e) != 5 {
		t.Fatalf("got %d entries", len(e))
	}
	if !reflect.DeepEqual(e[0], procCgroupEntry{ID: "12", Controllers: []string{"cpu", "cpuacct"}, Path: "/system.slice/karman.service"}) {
		t.Fatalf("entry 0 = %+v", e[0])
	}
	if e[4].ID != "0" || e[4].Controllers != nil {
		t.Fatalf("v2 entry = %+v", e[4])
	}
	if own, ok := ownV2Cgroup(e); !ok || own != "/system.slice/karman.service" {
		t.Fatalf("ownV2Cgroup = %q %v", own, ok)
	}
	if _, ok := ownV2Cgroup(mustParse(t, procV1Systemd)); ok {
		t.Fatal("pure v1 has no v2 entry")
	}
}

func mustParse(t *testing.T, s string) []procCgroupEntry {
	t.Helper()
	e, err := parseProcCgroup(s)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestInCgroup(t *testing.T) {
	proc := "4:memory:/karman/pod1/app\n1:cpu:/\n0::/\n"
	for cg, want := range map[string]bool{
		"/karman/pod1":     true,
		"karman/pod1":      true,
		"/karman/pod1/app": true,
		"/karman/pod":      false, // prefix of the name, not of the path
		"/karman/pod2":     false,
	} {
		if got := inCgroup(proc, cg); got != want {
			t.Errorf("inCgroup(%q) = %v, want %v", cg, got, want)
		}
	}
	if inCgroup("0::/karman/pod1/app\n", "/karman/pod1") != true {
		t.Error("v2 entry not matched")
	}
}

func TestValidName(t *testing.T) {
	for _, bad := range []string{"", ".", "..", "a/b", "a\x00"} {
		if validName("app", bad) == nil {
			t.Errorf("validName(%q) accepted", bad)
		}
	}
	for _, good := range []string{"app", "0f8f3c2a-1b2c-4d5e-8f90-123456789abc", "a.b_c-d"} {
		if err := validName("app", good); err != nil {
			t.Errorf("validName(%q): %v", good, err)
		}
	}
}

func TestCgroupLevels(t *testing.T) {
	if got, want := cgroupLevels("/karman/uuid"), []string{"/", "/karman", "/karman/uuid"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
	if got, want := cgroupLevels("a//b/"), []string{"/", "/a", "/a/b"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
	if got := cgroupLevels("/"); !reflect.DeepEqual(got, []string{"/"}) {
		t.Fatalf("got %v", got)
	}
}

func TestCPUQuota(t *testing.T) {
	for _, tt := range []struct {
		millis int64
		quota  int64
	}{
		{1000, 100000}, {500, 50000}, {2500, 250000}, {1, 1000 /* kernel minimum */}, {10, 1000}, {15, 1500},
	} {
		q, p := cpuQuota(tt.millis)
		if q != tt.quota || p != 100000 {
			t.Errorf("cpuQuota(%d) = %d/%d, want %d/100000", tt.millis, q, p, tt.quota)
		}
	}
}

func TestToSpec(t *testing.T) {
	spec, err := toSpec(Resources{})
	if err != nil || spec.Memory != nil || spec.CPU != nil || spec.Pids != nil {
		t.Fatalf("zero resources must set nothing: %+v %v", spec, err)
	}
	spec, err = toSpec(Resources{MemoryBytes: 32 << 20, CPUMillis: 500, CPUShares: 512, PidsLimit: 64})
	if err != nil {
		t.Fatal(err)
	}
	if *spec.Memory.Limit != 32<<20 || *spec.CPU.Quota != 50000 || *spec.CPU.Period != 100000 || *spec.CPU.Shares != 512 || *spec.Pids.Limit != 64 {
		t.Fatalf("spec = %+v %+v %+v", spec.Memory, spec.CPU, spec.Pids)
	}
	spec, _ = toSpec(Resources{CPUShares: 100})
	if spec.CPU.Quota != nil || spec.CPU.Period != nil {
		t.Fatal("shares alone must not set a quota")
	}
	if _, err := toSpec(Resources{MemoryBytes: -1}); err == nil {
		t.Fatal("negative memory accepted")
	}
}

func TestV2Resources(t *testing.T) {
	r, err := v2Resources(Resources{MemoryBytes: 64 << 20, CPUMillis: 1500, CPUShares: 1024, PidsLimit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if r.Memory == nil || *r.Memory.Max != 64<<20 || r.Memory.Swap != nil {
		t.Fatalf("memory = %+v", r.Memory)
	}
	if r.CPU == nil || r.CPU.Max != "150000 100000" || r.CPU.Weight == nil || *r.CPU.Weight != 100 {
		t.Fatalf("cpu = %+v", r.CPU)
	}
	if r.Pids == nil || r.Pids.Max != 100 {
		t.Fatalf("pids = %+v", r.Pids)
	}
	if got, want := r.EnabledControllers(), []string{"cpu", "memory", "pids"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("controllers = %v, want %v", got, want)
	}
	r, _ = v2Resources(Resources{})
	if len(r.EnabledControllers()) != 0 || len(r.Values()) != 0 {
		t.Fatalf("zero resources must write nothing: %+v", r)
	}
}

func TestSharesToWeight(t *testing.T) {
	// The conversion used on v2 (containerd's, the same as runc's and crun's).
	for shares, weight := range map[uint64]uint64{2: 1, 1024: 100, 262144: 10000, 512: 59, 4096: 303} {
		r, _ := v2Resources(Resources{CPUShares: shares})
		if got := *r.CPU.Weight; got != weight {
			t.Errorf("shares %d -> weight %d, want %d", shares, got, weight)
		}
		if got := cgroup2.ConvertCPUSharesToCgroupV2Value(shares); got != weight {
			t.Errorf("library: shares %d -> %d", shares, got)
		}
	}
}

func TestSubtreeEnableLine(t *testing.T) {
	for _, tt := range []struct{ avail, cur, want string }{
		{"cpuset cpu io memory hugetlb pids rdma misc\n", "", "+cpu +memory +pids"},
		{"cpuset cpu io memory pids\n", "cpu memory\n", "+pids"},
		{"cpu memory pids", "cpu memory pids", ""},
		{"hugetlb\n", "", ""}, // the unified mount of this hybrid host
		{"memory pids", "", "+memory +pids"},
	} {
		if got := subtreeEnableLine(v2Controllers, tt.avail, tt.cur); got != tt.want {
			t.Errorf("subtreeEnableLine(%q, %q) = %q, want %q", tt.avail, tt.cur, got, tt.want)
		}
	}
}

func TestShouldMoveSelf(t *testing.T) {
	const self = 42
	unit := "/system.slice/karman.service"
	for _, tt := range []struct {
		name  string
		lvl   string
		own   string
		procs []int
		want  bool
	}{
		{"own cgroup, only us", unit, unit, []int{self}, true},
		{"own cgroup, others too", unit, unit, []int{self, 7}, false},
		{"not our cgroup", "/system.slice", unit, []int{self}, false},
		{"root", "/", "/", []int{self}, false},
		{"unknown own", unit, "", []int{self}, false},
	} {
		if got := shouldMoveSelf(tt.lvl, tt.own, tt.procs, self); got != tt.want {
			t.Errorf("%s: got %v want %v", tt.name, got, tt.want)
		}
	}
}

func TestStatsFromV1(t *testing.T) {
	m := &v1stats.Metrics{
		Memory:           &v1stats.MemoryStat{Usage: &v1stats.MemoryEntry{Usage: 100, Max: 200}},
		MemoryOomControl: &v1stats.MemoryOomControl{OomKill: 3},
		CPU: &v1stats.CPUStat{
			Usage:      &v1stats.CPUUsage{Total: 5e9},
			Throttling: &v1stats.Throttle{Periods: 10, ThrottledPeriods: 4, ThrottledTime: 7e6},
		},
		Pids: &v1stats.PidsStat{Current: 2},
	}
	want := Stats{MemoryCurrent: 100, MemoryPeak: 200, CPUUsageNs: 5e9, ThrottledPeriods: 4, ThrottledNs: 7e6, Pids: 2, OOMKills: 3}
	if got := statsFromV1(m); got != want {
		t.Fatalf("got %+v want %+v", got, want)
	}
	if got := statsFromV1(&v1stats.Metrics{}); got != (Stats{}) {
		t.Fatalf("empty metrics: %+v", got)
	}
}

func TestStatsFromV2(t *testing.T) {
	m := &v2stats.Metrics{
		Memory:       &v2stats.MemoryStat{Usage: 100, MaxUsage: 200},
		MemoryEvents: &v2stats.MemoryEvents{OomKill: 3},
		CPU:          &v2stats.CPUStat{UsageUsec: 5e6, NrThrottled: 4, ThrottledUsec: 7e3},
		Pids:         &v2stats.PidsStat{Current: 2},
	}
	want := Stats{MemoryCurrent: 100, MemoryPeak: 200, CPUUsageNs: 5e9, ThrottledPeriods: 4, ThrottledNs: 7e6, Pids: 2, OOMKills: 3}
	if got := statsFromV2(m); got != want {
		t.Fatalf("got %+v want %+v", got, want)
	}
	if got := statsFromV2(&v2stats.Metrics{}); got != (Stats{}) {
		t.Fatalf("empty metrics: %+v", got)
	}
}

func TestModeString(t *testing.T) {
	for m, want := range map[cgroups.CGMode]string{
		cgroups.Legacy: "v1", cgroups.Hybrid: "hybrid", cgroups.Unified: "v2", cgroups.Unavailable: "unavailable",
	} {
		if got := modeString(m); got != want {
			t.Errorf("modeString(%v) = %q, want %q", m, got, want)
		}
	}
	if m := Mode(); m == "" {
		t.Fatal("empty mode")
	}
}

// TestHierarchy: --cgroup-hierarchy values, and what each gives on each
// kind of host (the refusals say what to use instead).
func TestHierarchy(t *testing.T) {
	for _, ok := range []string{"auto", "v1", "unified"} {
		if h, err := ParseHierarchy(ok); err != nil || string(h) != ok {
			t.Errorf("ParseHierarchy(%q) = %q, %v", ok, h, err)
		}
	}
	for _, bad := range []string{"", "v2", "Unified", "hybrid"} {
		if _, err := ParseHierarchy(bad); err == nil || !strings.Contains(err.Error(), "use auto, v1 or unified") {
			t.Errorf("ParseHierarchy(%q) = %v", bad, err)
		}
	}
	for _, tc := range []struct {
		m     cgroups.CGMode
		h     Hierarchy
		mount string // "" for v1
		err   string
	}{
		{cgroups.Legacy, Auto, "", ""},
		{cgroups.Legacy, "", "", ""},
		{cgroups.Legacy, V1, "", ""},
		{cgroups.Legacy, Unified, "", "--cgroup-hierarchy=unified refused: this host has no cgroup2 hierarchy"},
		{cgroups.Hybrid, Auto, "", ""},
		{cgroups.Hybrid, V1, "", ""},
		{cgroups.Hybrid, Unified, hybridUnifiedMount, ""},
		{cgroups.Unified, Auto, v2DefaultMount, ""},
		{cgroups.Unified, Unified, v2DefaultMount, ""},
		{cgroups.Unified, V1, "", "--cgroup-hierarchy=v1 refused: this host has only the cgroup2 hierarchy"},
		{cgroups.Unavailable, Auto, "", "no cgroup file system"},
		{cgroups.Hybrid, "v2", "", "use auto, v1 or unified"},
	} {
		h, err := hostForMode(tc.m, tc.h)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v %q: err %v, want %q", tc.m, tc.h, err, tc.err)
			}
			continue
		}
		if err != nil || h.v2 != (tc.mount != "") || h.v2Mount != tc.mount {
			t.Errorf("%v %q: %+v, %v; want mount %q", tc.m, tc.h, h, err, tc.mount)
		}
	}
}

// TestDeviceRulesCompile: an app's device rules (the allowlist, a device,
// every device for a privileged app, numbers left out) compile into the
// cgroup2 eBPF program, and come in the order v1 writes them.
func TestDeviceRulesCompile(t *testing.T) {
	one, eleven := int64(10), int64(237)
	for _, extra := range [][]specs.LinuxDeviceCgroup{
		nil,
		{{Allow: true, Type: "c", Major: &one, Minor: &eleven, Access: "r"}},
		{{Allow: true, Type: "a", Access: "rwm"}},
		{{Allow: true, Type: "b", Major: &one, Access: "rw"}},
	} {
		rules := deviceRules(Resources{Devices: extra})
		if len(rules) != len(DeviceAllowlist)+len(extra) || rules[0] != DeviceAllowlist[0] {
			t.Errorf("%v: rules %v", extra, rules)
		}
		if _, _, err := cgroup2.DeviceFilter(rules); err != nil {
			t.Errorf("%v: %v", extra, err)
		}
	}
}
