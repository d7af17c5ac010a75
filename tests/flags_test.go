package tests

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/tests/testenv"
)

// TestFlagsRefusedClearly: a flag value that would silently mean
// something else (no limit, a default, another user, a line injected in
// the pod's /etc/hosts) is refused before anything starts: exit 254, one
// line naming the flag and what to give.
func TestFlagsRefusedClearly(t *testing.T) {
	e := newPodEnv(t)
	sh := []string{"--exec", "/bin/sh", "--", "-c", "true"}
	tests := []struct {
		name string
		args []string // before the image
		app  []string // after it
		want []string
	}{
		{"cpu below a millicore", nil, []string{"--cpu=0.0001"}, []string{"--cpu", "from 1m to 1000 cores"}},
		{"cpu NaN", nil, []string{"--cpu=NaN"}, []string{"--cpu", "from 1m to 1000 cores"}},
		{"cpu below the least quota", nil, []string{"--cpu=5m"}, []string{"CPU limit 5 millicores", "10 to 1000000 millicores"}},
		{"cpu absurd", nil, []string{"--cpu=99999999999999m"}, []string{"--cpu", "from 1m to 1000 cores"}},
		{"memory tiny", nil, []string{"--memory=1k"}, []string{"memory limit 1024 bytes", "4 MiB to 1 PiB"}},
		{"cpu shares 1", nil, []string{"--cpu-shares=1"}, []string{"CPU shares 1", "2 to 262144"}},
		{"cpu shares negative", nil, []string{"--cpu-shares=-1"}, []string{"--cpu-shares", "2 to 262144"}},
		{"pids negative", nil, []string{"--pids-limit=-1"}, []string{"pids limit -1", "1 to 4194304"}},
		{"pids absurd", nil, []string{"--pids-limit=99999999"}, []string{"1 to 4194304"}},
		{"oom score", nil, []string{"--oom-score-adj=2000"}, []string{"-1000 to 1000"}},
		{"stop timeout negative", []string{"--stop-timeout=-1s"}, nil, []string{"--stop-timeout", "-1s is not a positive duration"}},
		{"exec empty", nil, []string{"--exec", ""}, []string{"--exec is empty"}},
		{"env empty name", nil, []string{"--env", "=x"}, []string{"=x", "name is empty"}},
		{"name with a space", []string{"--name", "a b"}, nil, []string{`name "a b"`, "letters, digits"}},
		{"hostname with a space", []string{"--hostname", "a b"}, nil, []string{`hostname "a b"`, "RFC 1123"}},
		{"hostname with a newline", []string{"--hostname", "x\n10.9.9.9 victim"}, nil, []string{"hostname", "RFC 1123"}},
		{"uid -1", nil, []string{"--user", "4294967295"}, []string{"4294967295", "0 to 4294967294"}},
		{"gid -1", nil, []string{"--user", "0:4294967295"}, []string{"0 to 4294967294"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append(append(tc.args, e.image), tc.app...), sh...)
			if tc.name == "exec empty" {
				args = append(append(tc.args, e.image), tc.app...)
			}
			r := e.run(t, args...)
			assertOneLine254(t, r, tc.want...)
		})
	}
	if r := karman(t, e.dir, "list", "--format", "json"); strings.TrimSpace(r.Stdout) != "[]" {
		t.Errorf("refused runs left pods: %s", r.Stdout)
	}
}

// assertOneLine254 checks that a command failed as karman's own errors do:
// exit 254, one line on stderr saying every one of want.
func assertOneLine254(t *testing.T, r testenv.Result, want ...string) {
	t.Helper()
	if r.Code != 254 {
		t.Fatalf("exit %d, want 254\n%s", r.Code, r)
	}
	msg := strings.TrimSpace(r.Stderr)
	if strings.Count(msg, "\n") != 0 || !strings.HasPrefix(msg, "karman: ") {
		t.Errorf("want one line starting with \"karman: \", got %q", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("%q does not say %q", msg, w)
		}
	}
}

// TestNameCannotInjectHosts: a pod name went into the pod's /etc/hosts
// as given, so a newline in it added a line (here mapping a host name to
// an address of the caller's choosing) and broke `karman list`. Such a
// name is refused; a valid one shows on the pod's own line only.
func TestNameCannotInjectHosts(t *testing.T) {
	e := newPodEnv(t)
	evil := "web\n10.9.9.9\tvictim.example"
	r := e.run(t, "--name", evil, e.image, "--exec", "/bin/cat", "--", "/etc/hosts")
	assertOneLine254(t, r, "name", "letters, digits")
	if strings.Contains(r.Stdout, "victim") {
		t.Errorf("the name went into /etc/hosts:\n%s", r.Stdout)
	}
	r = mustSucceed(t, e.run(t, "--name", "web_1.prod", e.image, "--exec", "/bin/cat", "--", "/etc/hosts"))
	lines := 0
	for _, l := range strings.Split(r.Stdout, "\n") {
		if strings.Contains(l, "web_1.prod") {
			lines++
		}
	}
	if lines != 1 {
		t.Errorf("the pod's name is on %d lines of /etc/hosts:\n%s", lines, r.Stdout)
	}
	var pods []stage0.PodInfo
	if err := json.Unmarshal([]byte(mustSucceed(t, karman(t, e.dir, "list", "--format", "json")).Stdout), &pods); err != nil || len(pods) != 1 || pods[0].Name != "web_1.prod" {
		t.Errorf("list: %+v, %v", pods, err)
	}
}

// TestStatusLinesInOrder: `status` prints its KEY=VALUE lines in one
// order (it ranged over a map, so created/started/finished came in any
// order from one call to the next).
func TestStatusLinesInOrder(t *testing.T) {
	e := newPodEnv(t)
	uuidFile := filepath.Join(t.TempDir(), "uuid")
	mustSucceed(t, e.run(t, "--uuid-file-save", uuidFile, e.image, "--exec", "/bin/true"))
	var first string
	for i := range 12 {
		out := mustSucceed(t, karman(t, e.dir, "status", "--uuid-file", uuidFile)).Stdout
		var keys []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			k, _, _ := strings.Cut(l, "=")
			keys = append(keys, k)
		}
		got := strings.Join(keys, " ")
		if !strings.HasPrefix(got, "uuid state created started finished exit-code") {
			t.Fatalf("status %d: keys in order %q", i, got)
		}
		if i == 0 {
			first = out
		} else if out != first {
			t.Fatalf("status changed from\n%s\nto\n%s", first, out)
		}
	}
}

// TestUUIDFileNotEchoed: --uuid-file naming a file that is no UUID file
// (here /etc/passwd) is refused naming the file, without printing it.
func TestUUIDFileNotEchoed(t *testing.T) {
	dir := t.TempDir()
	for _, cmd := range []string{"status", "stop", "rm"} {
		r := karman(t, dir, cmd, "--uuid-file", "/etc/passwd")
		assertOneLine254(t, r, "/etc/passwd", "does not hold a pod UUID")
		if strings.Contains(r.Stderr, "root:") || len(r.Stderr) > 300 {
			t.Errorf("%s: the error echoes the file: %q", cmd, r.Stderr)
		}
	}
}

// TestHostNetworkDropsNetRaw: a pod on the host's network gets no
// CAP_NET_RAW by default (it would open raw sockets on the host's
// interfaces); --caps-retain grants it by name. A pod of its own network
// keeps the default set.
func TestHostNetworkDropsNetRaw(t *testing.T) {
	e := newPodEnv(t)
	const netRaw = 13
	capEff := func(args ...string) uint64 {
		t.Helper()
		r := mustSucceed(t, e.run(t, append(args, "--exec", "/bin/sh", "--", "-c", "grep ^CapEff: /proc/self/status")...))
		m := regexp.MustCompile(`CapEff:\s*([0-9a-f]+)`).FindStringSubmatch(r.Stdout)
		if m == nil {
			t.Fatalf("no CapEff in %q", r.Stdout)
		}
		v, err := strconv.ParseUint(m[1], 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if c := capEff("--net=host", e.image); c&(1<<netRaw) != 0 {
		t.Errorf("host-network pod holds CAP_NET_RAW: CapEff %016x", c)
	}
	if c := capEff("--net=host", e.image, "--caps-remove", "chown"); c&(1<<netRaw) != 0 {
		t.Errorf("host-network pod with --caps-remove holds CAP_NET_RAW: CapEff %016x", c)
	}
	if c := capEff("--net=host", e.image, "--caps-retain", "CAP_NET_RAW,CAP_CHOWN"); c != 1<<netRaw|1 {
		t.Errorf("--caps-retain CAP_NET_RAW,CAP_CHOWN on the host network: CapEff %016x", c)
	}
	if c := capEff("--net=none", e.image); c&(1<<netRaw) == 0 {
		t.Errorf("a pod of its own network lost CAP_NET_RAW: CapEff %016x", c)
	}
}

// TestAgentParallelStartsRefused: the agent refuses a negative
// --parallel-starts instead of reading it as the default.
func TestAgentParallelStartsRefused(t *testing.T) {
	testenv.RequireRoot(t, "the agent runs pods")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Binary(t), "--dir", dir, "agent", "--cri-socket=", "--parallel-starts=-1", "--listen", "unix://"+filepath.Join(dir, "agent.sock"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	code := -1
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	assertOneLine254(t, testenv.Result{Stderr: stderr.String(), Code: code}, "--parallel-starts -1", "positive")
}

// TestRemovingEveryCapabilityLeavesNone: --caps-remove of the whole
// default set leaves the app none (the empty set once came back from
// pod.json as "the default").
func TestRemovingEveryCapabilityLeavesNone(t *testing.T) {
	e := newPodEnv(t)
	all := "AUDIT_WRITE,CHOWN,DAC_OVERRIDE,FOWNER,FSETID,KILL,MKNOD,NET_BIND_SERVICE,NET_RAW,SETFCAP,SETGID,SETPCAP,SETUID,SYS_CHROOT"
	r := mustSucceed(t, e.run(t, e.image, "--caps-remove", all, "--exec", "/bin/sh", "--", "-c", "grep -E '^Cap(Eff|Bnd):' /proc/self/status"))
	for _, w := range []string{"CapEff:\t0000000000000000", "CapBnd:\t0000000000000000"} {
		if !strings.Contains(r.Stdout, w) {
			t.Errorf("%q lacks %q", r.Stdout, w)
		}
	}
}

// TestDurationsRefused: `status --wait` and `gc --grace-period` refuse
// durations that would mean something else (a wait that ends at once, a
// negative grace).
func TestDurationsRefused(t *testing.T) {
	dir := t.TempDir()
	assertOneLine254(t, karman(t, dir, "status", "--wait=-1s", "0f3c2b1a-1111-4222-8333-444455556666"), "--wait=-1s", "positive duration")
	assertOneLine254(t, karman(t, dir, "gc", "--grace-period=-1s"), "--grace-period -1s", "positive duration")
}
