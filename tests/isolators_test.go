package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/isolators"
	"github.com/karman-project/karman/isolators/cgroups"
	"github.com/karman-project/karman/tests/testenv"
)

// buildTool builds a command of tests/testdata, static, with env added to
// the build's environment, and returns its path.
func buildTool(t *testing.T, name string, env ...string) string {
	t.Helper()
	root, err := testenv.ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command(goTool, "build", "-o", out, "./tests/testdata/"+name)
	cmd.Dir = root
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0"), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s %v: %v\n%s", name, env, err, b)
	}
	return out
}

// probeImage is busybox plus testdata/syscallprobe built for x86-64
// (/probe64) and for i386 (/probe32), and the probes the host can run:
// /probe32 only where the kernel runs i386 programs (IA32 emulation can
// be compiled out or switched off, as on some VMs).
func probeImage(t *testing.T) (image string, probes []string) {
	t.Helper()
	files := map[string][]byte{}
	for name, arch := range map[string]string{"probe64": "amd64", "probe32": "386"} {
		out := buildTool(t, "syscallprobe", "GOARCH="+arch)
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if err := exec.Command(out).Run(); err != nil {
			t.Logf("this host cannot run %s programs (%v): the pods run no /%s", arch, err, name)
		} else {
			probes = append(probes, "/"+name)
		}
		files[name] = data
	}
	slices.Sort(probes) // probe32 first, as map order is random
	return busyboxLayoutWith(t, "probe", files, func(string) int64 { return 0o755 }), probes
}

// TestDefaultSeccompFilter: the default filter refuses what the container
// default profile refuses, with EPERM, for 64-bit and 32-bit system calls,
// and leaves the rest alone.
func TestDefaultSeccompFilter(t *testing.T) {
	e := newPodEnv(t)
	probe, probes := probeImage(t)
	mustSucceed(t, karman(t, e.dir, "fetch", probe))
	for _, bin := range probes {
		r := mustSucceed(t, e.run(t, probe, "--exec", bin, "--", "getpid", "keyctl", "unshare", "settimeofday", "bpf", "ptrace"))
		for _, want := range []string{"getpid=0", "keyctl=1", "unshare=1", "settimeofday=1", "bpf=1", "ptrace=1"} {
			if !strings.Contains(r.Stdout, want+"\n") {
				t.Errorf("%s: %q lacks %q (errno 1 is EPERM)", bin, r.Stdout, want)
			}
		}
	}
	r := mustSucceed(t, e.run(t, probe, "--exec", "/bin/sh", "--", "-c", "grep -E '^Seccomp:' /proc/self/status"))
	if !strings.Contains(r.Stdout, "Seccomp:\t2") {
		t.Errorf("app not in seccomp filter mode: %q", r.Stdout)
	}
}

// TestMemoryLimitOOMKill: an app that outgrows --memory is killed by the
// kernel, the pod exits 137 and status says oom-killed.
func TestMemoryLimitOOMKill(t *testing.T) {
	e := newPodEnv(t)
	uuidFile := filepath.Join(t.TempDir(), "uuid")
	r := e.run(t, "--uuid-file-save", uuidFile, e.image, "--memory", "32M", "--exec", "/bin/sh", "--", "-c",
		`x=$(head -c 200000000 /dev/zero | tr '\0' a); echo survived`)
	if r.Code != 137 || strings.Contains(r.Stdout, "survived") {
		t.Fatalf("memory hog under --memory 32M: %s", r)
	}
	b, _ := os.ReadFile(uuidFile)
	pi := e.status(t, strings.TrimSpace(string(b)))
	if len(pi.Apps) != 1 || pi.Apps[0].Reason != "oom-killed" {
		t.Errorf("status after the OOM kill: %+v", pi.Apps)
	}
}

// TestPidsLimit: a fork loop stops at --pids-limit (threads count too:
// the probe is a Go program with a few).
func TestPidsLimit(t *testing.T) {
	e := newPodEnv(t)
	probe, _ := probeImage(t)
	mustSucceed(t, karman(t, e.dir, "fetch", probe))
	r := mustSucceed(t, e.run(t, probe, "--pids-limit", "16", "--exec", "/probe64", "--", "forks", "40"))
	var n int
	if _, err := fmt.Sscanf(strings.TrimSpace(r.Stdout), "forks=%d", &n); err != nil || n == 0 || n >= 16 {
		t.Errorf("fork loop under --pids-limit 16 started %d children: %q", n, r.Stdout)
	}
	r = mustSucceed(t, e.run(t, probe, "--exec", "/probe64", "--", "forks", "40"))
	if strings.TrimSpace(r.Stdout) != "forks=40" {
		t.Errorf("without a limit: %q", r.Stdout)
	}
}

// TestCPULimitThrottles: a busy loop under --cpu is throttled, as the
// cgroup's throttle counters show in status.
func TestCPULimitThrottles(t *testing.T) {
	e := newPodEnv(t)
	_, uuid := e.startPod(t, e.image, "--cpu", "100m", "--exec", "/bin/sh", "--", "-c", "while :; do :; done")
	deadline := time.Now().Add(20 * time.Second)
	for {
		pi := e.status(t, uuid)
		st, ok := pi.Resources[pi.Apps[0].Name]
		if ok && st.ThrottledPeriods > 0 && st.CPUUsageNs > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no throttling recorded under --cpu 100m: %+v", pi.Resources)
		}
		time.Sleep(100 * time.Millisecond)
	}
	mustSucceed(t, karman(t, e.dir, "stop", "--force", uuid))
}

// TestPerAppIsolation: --caps-retain/--caps-remove, --readonly-rootfs,
// --oom-score-adj, and --insecure-options that drop defaults knowingly.
func TestPerAppIsolation(t *testing.T) {
	e := newPodEnv(t)
	status := `grep -E '^(CapEff|CapBnd|Seccomp):' /proc/self/status; echo oom=$(cat /proc/self/oom_score_adj); touch /x 2>/dev/null && echo rootfs=rw || echo rootfs=ro; chown 1:1 /etc/group 2>/dev/null && echo chown=ok || echo chown=refused; wc -c < /proc/keys | sed 's/^/keys=/'`
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"retain", []string{e.image, "--caps-retain", "CAP_NET_BIND_SERVICE"}, []string{"CapEff:\t0000000000000400", "CapBnd:\t0000000000000400", "chown=refused"}},
		{"remove", []string{e.image, "--caps-remove", "chown"}, []string{"CapEff:\t00000000a80425fa", "chown=refused"}},
		{"defaults", []string{e.image}, []string{"CapEff:\t00000000a80425fb", "chown=ok", "rootfs=rw", "oom=0", "Seccomp:\t2", "keys=0"}},
		{"readonly and oom", []string{e.image, "--readonly-rootfs", "--oom-score-adj", "500"}, []string{"rootfs=ro", "oom=500"}},
		{"insecure", []string{"--insecure-options", "capabilities,seccomp,paths", e.image}, []string{"Seccomp:\t0", "chown=ok"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mustSucceed(t, e.run(t, append(tc.args, "--exec", "/bin/sh", "--", "-c", status)...))
			for _, w := range tc.want {
				if !strings.Contains(r.Stdout, w) {
					t.Errorf("%q lacks %q", r.Stdout, w)
				}
			}
			if tc.name == "insecure" {
				if strings.Contains(r.Stdout, "keys=0\n") && fileSize(t, "/proc/keys") > 0 {
					t.Errorf("/proc/keys still masked with --insecure-options=paths: %q", r.Stdout)
				}
				if !strings.Contains(r.Stderr, "WARNING") {
					t.Errorf("no warning for --insecure-options: %q", r.Stderr)
				}
			}
		})
	}
	for _, bad := range [][]string{
		{e.image, "--caps-retain", "CAP_FLY"},
		{e.image, "--caps-retain", "CHOWN", "--caps-remove", "KILL"},
		{e.image, "--oom-score-adj", "2000"},
	} {
		if r := e.run(t, bad...); r.Code != 254 {
			t.Errorf("%v accepted:\n%s", bad, r)
		}
	}
	// The app's first read already sees its own value, never the init's.
	for range 5 {
		r := mustSucceed(t, e.run(t, e.image, "--oom-score-adj", "700", "--exec", "/bin/cat", "--", "/proc/self/oom_score_adj"))
		if r.Stdout != "700\n" {
			t.Fatalf("the app's first read of oom_score_adj: %q, want 700", r.Stdout)
		}
	}
	// A value karman may not set is refused, not silently dropped.
	if !hasCapability(t, unix.CAP_SYS_RESOURCE) {
		r := e.run(t, e.image, "--oom-score-adj", "-500", "--exec", "/bin/true")
		if r.Code != 254 || !strings.Contains(r.Stderr, "--oom-score-adj -500") || !strings.Contains(r.Stderr, "CAP_SYS_RESOURCE") {
			t.Errorf("--oom-score-adj -500 without CAP_SYS_RESOURCE: want exit 254 naming the flag and the capability, got\n%s", r)
		}
	}
}

// hasCapability tells whether this process has capability c in its
// effective set.
func hasCapability(t *testing.T, c int) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:\t"); ok {
			eff, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return eff&(1<<c) != 0
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return false
}

func fileSize(t *testing.T, p string) int {
	t.Helper()
	b, _ := os.ReadFile(p)
	return len(b)
}

// TestSysctl: namespaced sysctls are set in the pod and not on the host;
// others are refused before anything starts.
func TestSysctl(t *testing.T) {
	e := newPodEnv(t)
	host, _ := os.ReadFile("/proc/sys/kernel/shmmax")
	r := mustSucceed(t, e.run(t, "--sysctl", "kernel.shmmax=12345678", "--sysctl", "net.ipv4.ip_default_ttl=33", e.image,
		"--exec", "/bin/sh", "--", "-c", "cat /proc/sys/kernel/shmmax /proc/sys/net/ipv4/ip_default_ttl"))
	if r.Stdout != "12345678\n33\n" {
		t.Errorf("sysctls in the pod: %q", r.Stdout)
	}
	if after, _ := os.ReadFile("/proc/sys/kernel/shmmax"); string(after) != string(host) {
		t.Errorf("the host's kernel.shmmax changed: %q -> %q", host, after)
	}
	for _, bad := range [][]string{{"--sysctl", "kernel.panic=1"}, {"--sysctl", "vm.swappiness=1"}, {"--net=host", "--sysctl", "net.ipv4.ip_default_ttl=33"}, {"--sysctl", "novalue"}} {
		if r := e.run(t, append(bad, e.image, "--exec", "/bin/true")...); r.Code != 254 || !strings.Contains(r.Stderr, "--sysctl") {
			t.Errorf("%v: %s", bad, r)
		}
	}
}

// TestDeviceAllowlist: a device node an app makes (or an image ships)
// cannot be opened; the pod's own /dev works.
func TestDeviceAllowlist(t *testing.T) {
	e := newPodEnv(t)
	r := mustSucceed(t, e.run(t, e.image, "--exec", "/bin/sh", "--", "-c",
		`mknod /tmp/disk b 8 0 && echo made; head -c1 /tmp/disk >/dev/null 2>&1 && echo disk=open || echo disk=refused; echo x > /dev/null && echo null=ok; head -c 8 /dev/urandom | wc -c`))
	for _, want := range []string{"made", "disk=refused", "null=ok", "8"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("%q lacks %q", r.Stdout, want)
		}
	}
}

// TestRlimitsInherited: apps see the host's hard limits, never more.
func TestRlimitsInherited(t *testing.T) {
	e := newPodEnv(t)
	var nofile, nproc syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile)
	syscall.Getrlimit(6 /* RLIMIT_NPROC */, &nproc)
	r := mustSucceed(t, e.run(t, e.image, "--exec", "/bin/sh", "--", "-c", "ulimit -Hn; ulimit -Hu"))
	want := fmt.Sprintf("%d\n%d\n", nofile.Max, nproc.Max)
	if r.Stdout != want {
		t.Errorf("hard limits in the app: %q, the host's: %q", r.Stdout, want)
	}
}

// TestSeccompFlag: --seccomp per app and for every app. mode=remove
// refuses more calls with the chosen errno on top of the default filter;
// mode=retain lets a program run on its listed calls and answers the
// errno to the rest; unconfined lets keyctl and unshare through; bad
// names are refused before anything is made.
func TestSeccompFlag(t *testing.T) {
	e := newPodEnv(t)
	probe, probes := probeImage(t)
	mustSucceed(t, karman(t, e.dir, "fetch", probe))
	check := func(t *testing.T, out string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(out, w+"\n") {
				t.Errorf("%q lacks %q", out, w)
			}
		}
	}
	calls := []string{"--", "getpid", "getppid", "getuid", "keyctl", "unshare"}
	// Every call but getuid and keyctl: the Go probe runs on it.
	var allBut []string
	for _, n := range isolators.SyscallNames() {
		if n != "getuid" && n != "keyctl" {
			allBut = append(allBut, n)
		}
	}
	retainAll := "mode=retain,errno=EACCES," + strings.Join(allBut, ",")
	for _, bin := range probes {
		t.Run(bin, func(t *testing.T) {
			// ENOTSUP is 95, EPERM 1, EACCES 13; keyctl(0,0) unfiltered
			// fails with an error of its own, not 1 or 13.
			r := mustSucceed(t, e.run(t, append([]string{probe, "--seccomp", "mode=remove,errno=ENOTSUP,getppid", "--exec", bin}, calls...)...))
			check(t, r.Stdout, "getpid=0", "getppid=95", "keyctl=1", "unshare=1")

			r = mustSucceed(t, e.run(t, append([]string{probe, "--seccomp", retainAll, "--exec", bin}, calls...)...))
			check(t, r.Stdout, "getpid=0", "getuid=13", "keyctl=13", "unshare=0")

			r = mustSucceed(t, e.run(t, append([]string{probe, "--seccomp", "unconfined", "--exec", bin}, calls...)...))
			check(t, r.Stdout, "getpid=0", "getppid=0", "unshare=0")
			if strings.Contains(r.Stdout, "keyctl=1\n") || strings.Contains(r.Stdout, "keyctl=13\n") {
				t.Errorf("keyctl refused while unconfined: %q", r.Stdout)
			}
		})
	}

	// A short retain list, what busybox cat needs: it reads the file;
	// without openat it gets the errno and fails.
	catCalls := "brk,mprotect,arch_prctl,getuid,prctl,getrandom,rseq,set_tid_address,set_robust_list,readlink,read,sendfile,fstat,newfstatat,prlimit64,close,write"
	r := mustSucceed(t, e.run(t, e.image, "--seccomp", "mode=retain,errno=EACCES,openat,"+catCalls, "--exec", "/bin/cat", "--", "/etc/passwd"))
	if !strings.Contains(r.Stdout, "root:") {
		t.Errorf("cat under its retain list: %s", r)
	}
	r = e.run(t, e.image, "--seccomp", "mode=retain,errno=EACCES,"+catCalls, "--exec", "/bin/cat", "--", "/etc/passwd")
	if r.Code != 1 || !strings.Contains(r.Stderr, "Permission denied") {
		t.Errorf("cat without openat: %s", r)
	}

	// Through the shim, an error only execve finds reports as usual (126
	// and the reason), here for enter, which starts the same way.
	_, uuid := e.startPod(t, e.image, "--seccomp", "mode=remove,keyctl", "--exec", "/bin/sh", "--", "-c", `printf '\001\002\003\004' >/tmp/bad; chmod 755 /tmp/bad; echo ok >/tmp/ready; exec sleep 1000`)
	for range 100 {
		if r := karman(t, e.dir, "enter", uuid, "/bin/cat", "/tmp/ready"); r.Code == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	r = karman(t, e.dir, "enter", uuid, "/tmp/bad")
	if r.Code != 126 || !strings.Contains(r.Stderr, "exec format error") {
		t.Errorf("enter of a file execve refuses: %s", r)
	}
	mustSucceed(t, karman(t, e.dir, "stop", "--force", uuid))
	mustSucceed(t, karman(t, e.dir, "status", "--wait=10s", uuid))

	// Through the shim an app gets its user, groups, directory and
	// capabilities as it does without (TestPerAppIsolation).
	status := `id; pwd; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status`
	self, _ := os.ReadFile("/proc/self/status")
	hostBnd := regexp.MustCompile(`CapBnd:\t[0-9a-f]+`).FindString(string(self)) // what root has here
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--user", "karman", "--workdir", "/home/karman"}, []string{"uid=1000(karman) gid=1000(karman)", "\n/home/karman\n", "CapEff:\t0000000000000000", "CapBnd:\t00000000a80425fb", "NoNewPrivs:\t1", "Seccomp:\t2"}},
		{[]string{"--caps-retain", "CAP_NET_BIND_SERVICE"}, []string{"uid=0(root)", "\n/\n", "CapEff:\t0000000000000400", "CapBnd:\t0000000000000400", "NoNewPrivs:\t1"}},
		{[]string{"--insecure-options=capabilities"}, []string{"uid=0(root)", hostBnd}},
	} {
		args := []string{e.image}
		if strings.HasPrefix(tc.args[0], "--insecure") {
			args = append(tc.args, e.image)
		} else {
			args = append(args, tc.args...)
		}
		r := mustSucceed(t, e.run(t, append(args, "--seccomp", "mode=remove,keyctl", "--exec", "/bin/sh", "--", "-c", status)...))
		for _, w := range tc.want {
			if !strings.Contains(r.Stdout, w) {
				t.Errorf("%v through the shim: %q lacks %q", tc.args, r.Stdout, w)
			}
		}
	}

	// The app's environment reaches it through the shim whatever its size.
	big := strings.Repeat("x", 100000)
	r = mustSucceed(t, e.run(t, e.image, "--env", "BIG="+big, "--seccomp", "mode=remove,keyctl", "--exec", "/bin/sh", "--", "-c", `echo ${#BIG}`))
	if r.Stdout != "100000\n" {
		t.Errorf("a 100 kB variable through the shim: %q", r.Stdout)
	}

	// Before the first IMAGE for every app; after an IMAGE for that app,
	// overriding the common value.
	r = mustSucceed(t, e.run(t, "--seccomp", "mode=remove,errno=EACCES,getppid",
		probe, "--exec", "/probe64", "--", "getppid", "---",
		probe, "--seccomp", "unconfined", "--exec", "/probe64", "--", "getppid"))
	if got := strings.Count(r.Stdout, "getppid=13\n") + 10*strings.Count(r.Stdout, "getppid=0\n"); got != 11 {
		t.Errorf("common then per-app --seccomp: %q", r.Stdout)
	}

	for bad, want := range map[string]string{
		"mode=remove,keyctll":           `unknown system call "keyctll"`,
		"mode=remove,errno=EFOO,keyctl": `unknown errno "EFOO"`,
		"keyctl":                        "say mode=remove or mode=retain",
	} {
		r := e.run(t, e.image, "--seccomp", bad, "--exec", "/bin/true")
		if r.Code != 254 || !strings.Contains(r.Stderr, want) {
			t.Errorf("--seccomp %s: want exit 254 and %q:\n%s", bad, want, r)
		}
	}
	r = e.run(t, "--insecure-options=seccomp", e.image, "--seccomp", "mode=remove,keyctl", "--exec", "/bin/true")
	if r.Code != 254 || !strings.Contains(r.Stderr, "exclude each other") {
		t.Errorf("--seccomp with --insecure-options=seccomp: %s", r)
	}
	// The pods that ran (three per ABI, cat twice, the one entered, three
	// users and capability sets, the big variable, the pod of two apps)
	// are there; the refused ones left nothing behind.
	for _, sd := range []string{"embryo", "prepared", "run", "garbage"} {
		ents, _ := os.ReadDir(filepath.Join(e.dir, "pods", sd))
		if want := map[string]int{"run": 3*len(probes) + 8}[sd]; len(ents) != want {
			t.Errorf("pods/%s holds %d pods, want %d", sd, len(ents), want)
		}
	}
}

// TestCgroupV2Pods runs pods on cgroup v2: on a v2 host as it is, on a
// hybrid host (this machine) through its cgroup2 hierarchy
// (/sys/fs/cgroup/unified, `run --cgroup-hierarchy=unified`), which has no
// resource controllers but is real cgroup v2 otherwise. Each app starts
// inside its own v2 cgroup (forked there with clone3, then its filter
// loaded by the exec shim), in a cgroup namespace rooted there, behind the
// eBPF device allowlist and with its seccomp filter, default or its own;
// enter joins it too; gc removes the cgroups. Only run is given the
// option: status, enter, stop and gc follow what the pod recorded.
func TestCgroupV2Pods(t *testing.T) {
	testenv.RequireRoot(t, "pods need namespaces, mounts and cgroups")
	isCgroup2 := func(dir string) bool {
		var st syscall.Statfs_t
		return syscall.Statfs(dir, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
	}
	mount := "/sys/fs/cgroup"
	var hier []string // run's option
	switch {
	case isCgroup2(mount):
	case isCgroup2("/sys/fs/cgroup/unified"):
		mount = "/sys/fs/cgroup/unified"
		hier = []string{"--cgroup-hierarchy=unified"}
	default:
		testenv.SkipAllowed(t, testenv.CgroupLayout, "no cgroup2 hierarchy on this host")
	}
	e := newPodEnv(t)
	probe, _ := probeImage(t)
	mustSucceed(t, karman(t, e.dir, "fetch", probe))

	inside := `cat /proc/self/cgroup; mknod /tmp/disk b 8 0 && (head -c1 /tmp/disk >/dev/null 2>&1 && echo disk=open || echo disk=refused); echo x >/dev/null && echo null=ok; grep Seccomp: /proc/self/status; /probe64 keyctl getppid getpid`
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"default filter", nil, []string{"0::/\n", "disk=refused", "null=ok", "Seccomp:\t2", "keyctl=1\n", "getppid=0\n", "getpid=0\n"}},
		{"own filter", []string{"--seccomp", "mode=remove,errno=ENOTSUP,getppid"}, []string{"0::/\n", "disk=refused", "keyctl=1\n", "getppid=95\n"}},
		{"unconfined", []string{"--seccomp", "unconfined"}, []string{"0::/\n", "disk=refused", "Seccomp:\t0", "getppid=0\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append(append(slices.Clip(hier), probe), tc.args...), "--exec", "/bin/sh", "--", "-c", inside)
			r := mustSucceed(t, e.run(t, args...))
			for _, w := range tc.want {
				if !strings.Contains(r.Stdout, w) {
					t.Errorf("%q lacks %q", r.Stdout, w)
				}
			}
		})
	}

	// Limits that leave the exec shim no room are refused with the reason.
	if r := e.run(t, append(slices.Clip(hier), e.image, "--pids-limit", "2", "--exec", "/bin/true")...); r.Code != 254 || !strings.Contains(r.Stderr, "--pids-limit 2 is too low on cgroup v2") {
		t.Errorf("--pids-limit 2 on v2: %s", r)
	}

	// A running pod of two apps: each app's process is in its own cgroup
	// (seen from the host), and so is what enter starts.
	_, uuid := e.startPod(t, append(slices.Clip(hier), e.image, "--exec", "/bin/sleep", "--", "1000", "---", e.image, "--exec", "/bin/sleep", "--", "1000")...)
	pi := e.status(t, uuid)
	if len(pi.Apps) != 2 {
		t.Fatalf("status: %+v", pi)
	}
	for _, a := range pi.Apps {
		dir := filepath.Join(mount, "karman", uuid, a.Name)
		procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil || strings.TrimSpace(string(procs)) != fmt.Sprint(a.PID) {
			t.Errorf("app %s (pid %d): %s/cgroup.procs = %q, %v", a.Name, a.PID, dir, procs, err)
		}
	}
	r := mustSucceed(t, karman(t, e.dir, "enter", "--app", pi.Apps[1].Name, uuid, "/bin/cat", "/proc/self/cgroup"))
	if !strings.Contains(r.Stdout, "0::/\n") {
		t.Errorf("enter: %q", r.Stdout)
	}
	enter := exec.Command(testenv.Binary(t), "--dir", e.dir, "--config-dir", filepath.Join(e.dir, "etc"), "enter", "--app", pi.Apps[1].Name, uuid, "/bin/sleep", "5")
	if err := enter.Start(); err != nil {
		t.Fatal(err)
	}
	var procs []string
	for range 100 { // up to 5s
		b, _ := os.ReadFile(filepath.Join(mount, "karman", uuid, pi.Apps[1].Name, "cgroup.procs"))
		if procs = strings.Fields(string(b)); len(procs) == 2 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(procs) != 2 {
		t.Errorf("processes in app %s during enter: %v", pi.Apps[1].Name, procs)
	}
	enter.Process.Kill()
	enter.Wait()
	mustSucceed(t, karman(t, e.dir, "stop", "--force", uuid))
	mustSucceed(t, karman(t, e.dir, "status", "--wait=10s", uuid))
	mustSucceed(t, karman(t, e.dir, "gc", "--grace-period=0"))
	mustSucceed(t, karman(t, e.dir, "gc", "--grace-period=0"))
	if _, err := os.Stat(filepath.Join(mount, "karman", uuid)); !os.IsNotExist(err) {
		t.Errorf("pod cgroup after gc: %v", err)
	}
}

// TestCgroupHierarchyOption: a bad --cgroup-hierarchy is refused (254)
// before anything is done; on a hybrid host, whose cgroup2 hierarchy has
// no resource controller, run --cgroup-hierarchy=unified refuses limits
// in one line saying which, why and what to do, and leaves nothing
// behind, while --cgroup-hierarchy=v1 runs the pod as auto does.
func TestCgroupHierarchyOption(t *testing.T) {
	e := newPodEnv(t)
	for _, args := range [][]string{{"--cgroup-hierarchy=v2", "list"}, {"run", "--cgroup-hierarchy", "hybrid", e.image, "--exec", "/bin/true"}} {
		if r := karman(t, e.dir, args...); r.Code != 254 || !strings.Contains(r.Stderr, "use auto, v1 or unified") || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
			t.Errorf("%v: %s", args, r)
		}
	}
	if cgroups.Mode() != "hybrid" {
		testenv.SkipAllowed(t, testenv.CgroupLayout, "the limits refusal needs a hybrid host, this one is "+cgroups.Mode())
	}
	if b, _ := os.ReadFile("/sys/fs/cgroup/unified/cgroup.controllers"); strings.Contains(string(b), "memory") {
		testenv.SkipAllowed(t, testenv.CgroupLayout, "this hybrid host's cgroup2 hierarchy has the memory controller")
	}
	r := e.run(t, "--cgroup-hierarchy=unified", e.image, "--memory", "64M", "--exec", "/bin/true")
	if r.Code != 254 || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
		t.Errorf("--memory on the controllerless cgroup2 hierarchy: %s", r)
	}
	for _, want := range []string{"--memory refused", "cgroup2 hierarchy lacks the controller (memory)", "/sys/fs/cgroup/unified", "--cgroup-hierarchy=auto"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("%q lacks %q", r.Stderr, want)
		}
	}
	mustSucceed(t, e.run(t, "--cgroup-hierarchy=v1", e.image, "--memory", "64M", "--exec", "/bin/true"))
	mustSucceed(t, karman(t, e.dir, "gc", "--grace-period=0"))
	for _, sd := range []string{"embryo", "prepared", "run"} {
		if ents, _ := os.ReadDir(filepath.Join(e.dir, "pods", sd)); len(ents) != 0 {
			t.Errorf("pods/%s holds %d pods after gc", sd, len(ents))
		}
	}
}

// TestInitMainThreadStaysOut: the threads that start apps and enter
// sessions take the app's filter and cgroup and are discarded; the init's
// main thread is never one of them, however many starts there are.
func TestInitMainThreadStaysOut(t *testing.T) {
	e := newPodEnv(t)
	_, uuid := e.startPod(t, e.image, "--exec", "/bin/sleep", "--", "1000")
	for range 12 {
		mustSucceed(t, karman(t, e.dir, "enter", uuid, "/bin/true"))
	}
	b, err := os.ReadFile(filepath.Join(e.dir, "pods", "run", uuid, "state", "init.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSpace(string(b))
	main := "/proc/" + pid + "/task/" + pid
	cg, _ := os.ReadFile(main + "/cgroup")
	st, _ := os.ReadFile(main + "/status")
	// The init itself lives in the pod's cgroup (TestInitInPodCgroup),
	// never in an app's (<pod>/<app>).
	if strings.Contains(string(cg), uuid+"/") || !strings.Contains(string(st), "Seccomp:\t0") || !strings.Contains(string(st), "NoNewPrivs:\t0") {
		t.Errorf("the init's main thread took an app's restrictions:\n%s%s", cg, st)
	}
	mustSucceed(t, karman(t, e.dir, "stop", "--force", uuid))
}

// TestInitInPodCgroup: the pod's init starts in the pod's own cgroup of
// the cpu hierarchies, so its work counts for the pod (CPU weight and
// accounting), not for whoever started the pod (the node agent, say).
func TestInitInPodCgroup(t *testing.T) {
	e := newPodEnv(t)
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(own), ":cpu,cpuacct:") && !strings.Contains(string(own), ":cpu:") {
		testenv.SkipAllowed(t, testenv.CgroupLayout, "no v1 cpu hierarchy on this host: the init's placement by thread is a v1 feature")
	}
	cmd, uuid := e.startPod(t, e.image, "--exec", "/bin/sleep", "--", "1000")
	defer cmd.Process.Kill()
	b, err := os.ReadFile(filepath.Join(e.dir, "pods", "run", uuid, "state", "init.pid"))
	if err != nil {
		t.Fatal(err)
	}
	cg, err := os.ReadFile("/proc/" + strings.TrimSpace(string(b)) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(cg)), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 {
			continue
		}
		ctrls := strings.Split(parts[1], ",")
		if slices.Contains(ctrls, "cpu") || slices.Contains(ctrls, "cpuacct") {
			if !strings.HasSuffix(parts[2], "/"+uuid) {
				t.Errorf("the init is in %s of %s, want the pod's cgroup .../%s", parts[2], parts[1], uuid)
			}
		}
	}
	mustSucceed(t, karman(t, e.dir, "stop", uuid))
}
