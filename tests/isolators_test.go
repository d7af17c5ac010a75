package tests

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/karman-project/karman/tests/testenv"
	"github.com/karman-project/karman/tests/testimage"
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
// (/probe64) and for i386 (/probe32).
func probeImage(t *testing.T) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, arch := range map[string]string{"probe64": "amd64", "probe32": "386"} {
		data, err := os.ReadFile(buildTool(t, "syscallprobe", "GOARCH="+arch))
		if err != nil {
			t.Fatal(err)
		}
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	tw.Close()
	base := testimage.Must(t)(testimage.Busybox(testimage.Options{}))
	img, err := mutate.AppendLayers(base, static.NewLayer(buf.Bytes(), types.OCIUncompressedLayer))
	if err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(t.TempDir(), "layout")
	if _, err := testimage.WriteLayout(layout, "probe", img); err != nil {
		t.Fatal(err)
	}
	return "oci:" + layout + ":probe"
}

// TestDefaultSeccompFilter: the default filter refuses what the container
// default profile refuses, with EPERM, for 64-bit and 32-bit system calls,
// and leaves the rest alone.
func TestDefaultSeccompFilter(t *testing.T) {
	e := newPodEnv(t)
	probe := probeImage(t)
	mustSucceed(t, karman(t, e.dir, "fetch", probe))
	for _, bin := range []string{"/probe64", "/probe32"} {
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
	probe := probeImage(t)
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
