package tests

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/tests/testenv"
	"github.com/karman-project/karman/tests/testimage"
)

// The security options beyond the defaults (docs/security.md): groups,
// no_new_privs, privileged, masked and read-only paths, host PID and IPC
// namespaces, seccomp profiles, volume propagation and devices.

// imageWithFiles is the busybox image with files (path: contents) added
// in a layer of their own, mode 0644 (0755 for paths ending in .sh).
func imageWithFiles(t *testing.T, e *podEnv, files map[string]string) string {
	t.Helper()
	contents := map[string][]byte{}
	for name, data := range files {
		contents[name] = []byte(data)
	}
	ref := busyboxLayoutWith(t, "files", contents, func(name string) int64 {
		if strings.HasSuffix(name, ".sh") {
			return 0o755
		}
		return 0o644
	})
	mustSucceed(t, karman(t, e.dir, "fetch", ref))
	return ref
}

// busyboxLayoutWith writes the busybox image with files (path: contents,
// of mode(path)) added in a layer of their own as an OCI layout, and
// returns its reference (oci:DIR:TAG).
func busyboxLayoutWith(t *testing.T, tag string, files map[string][]byte, mode func(string) int64) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, data := range files {
		tw.WriteHeader(&tar.Header{Name: name, Mode: mode(name), Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	tw.Close()
	base := testimage.Must(t)(testimage.Busybox(testimage.Options{}))
	img, err := mutate.AppendLayers(base, static.NewLayer(buf.Bytes(), types.OCIUncompressedLayer))
	if err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(t.TempDir(), "layout")
	if _, err := testimage.WriteLayout(layout, tag, img); err != nil {
		t.Fatal(err)
	}
	return "oci:" + layout + ":" + tag
}

// TestSupplementalGroups: --group replaces the user's group, --group-add
// adds gids, merged with the image's /etc/group memberships of the user
// unless --groups-policy=strict.
func TestSupplementalGroups(t *testing.T) {
	e := newPodEnv(t)
	img := imageWithFiles(t, e, map[string]string{"etc/group": testimage.Group + "staff:x:50:karman\nwheel:x:10:root,karman\n"})
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--user", "karman"}, "1000 1000 10 50"},
		{[]string{"--user", "karman", "--group-add", "4242,50", "--group-add", "7"}, "1000 1000 7 10 50 4242"},
		{[]string{"--user", "karman", "--group-add", "4242", "--groups-policy", "strict"}, "1000 1000 4242"},
		{[]string{"--user", "karman", "--groups-policy", "strict"}, "1000 1000"},
		{[]string{"--user", "1000", "--group", "staff"}, "1000 50 10"},
		{[]string{"--user", "4000", "--group", "4001", "--group-add", "4002"}, "4000 4001 4002"},
		{[]string{"--group", "wheel"}, "0 10"},
	}
	for _, tc := range tests {
		r := mustSucceed(t, e.run(t, append(append([]string{img}, tc.args...), "--exec", "/bin/sh", "--", "-c", `echo $(id -u) $(id -g) $(id -G | tr ' ' '\n' | grep -vx "$(id -g)" | sort -n)`)...))
		if got := strings.Join(strings.Fields(r.Stdout), " "); got != tc.want {
			t.Errorf("%v: uid gid groups = %q, want %q", tc.args, got, tc.want)
		}
	}
	for _, bad := range [][]string{
		{"--groups-policy", "loose"}, {"--group-add", "-1"}, {"--group-add", "4294967295"}, {"--group", "no:such"},
		{"--group", "nosuchgroup"}, {"--group", ""},
	} {
		r := e.run(t, append(append([]string{img}, bad...), "--exec", "/bin/true")...)
		if r.Code != 254 || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
			t.Errorf("%v: want one line of refusal and 254, got\n%s", bad, r)
		}
	}
}

// TestNoNewPrivs: no_new_privs is set unless --no-new-privs=false.
func TestNoNewPrivs(t *testing.T) {
	e := newPodEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "NoNewPrivs:\t1"},
		{[]string{"--no-new-privs=false"}, "NoNewPrivs:\t0"},
		{[]string{"--no-new-privs=false", "--user", "1000", "--seccomp", "mode=remove,chmod"}, "NoNewPrivs:\t0"},
		{[]string{"--no-new-privs=false", "--oom-score-adj", "10"}, "NoNewPrivs:\t0"},
	} {
		r := mustSucceed(t, e.run(t, append(append([]string{e.image}, tc.args...), "--exec", "/bin/sh", "--", "-c", "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status")...))
		if !strings.Contains(r.Stdout, tc.want) || !strings.Contains(r.Stdout, "Seccomp:\t2") {
			t.Errorf("%v: %q lacks %q or a filter", tc.args, r.Stdout, tc.want)
		}
	}
}

// TestPrivileged: --privileged gives every capability, no filter, /proc
// unmasked, /sys writable and the host's devices, allowed by the device
// cgroup, on each hierarchy.
func TestPrivileged(t *testing.T) {
	for name, hier := range hierarchies() {
		t.Run(name, func(t *testing.T) { testPrivileged(t, hier) })
	}
}

func testPrivileged(t *testing.T, hier []string) {
	e := newPodEnv(t)
	testenv.RequireFile(t, "/dev/loop-control", "a host device outside the default allowlist")
	script := `grep -E '^(CapEff|Seccomp):' /proc/self/status; grep ' /sys ' /proc/self/mountinfo | cut -d' ' -f6 | cut -d, -f1 | sed 's/^/sys=/'; ls -l /dev/loop-control | cut -c1; head -c0 /dev/loop-control 2>/dev/null && echo loopctl=open; grep -c ' /proc/keys ' /proc/self/mountinfo | sed 's/^/keymasks=/'`
	r := mustSucceed(t, e.run(t, append(slices.Clip(hier), e.image, "--privileged", "--exec", "/bin/sh", "--", "-c", script)...))
	// Every capability this kernel knows.
	b, _ := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	last, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	caps := fmt.Sprintf("CapEff:\t%016x", uint64(1)<<(last+1)-1)
	if !hasCapability(t, unix.CAP_SYS_RESOURCE) {
		// What karman itself lacks, no app gets.
		caps = fmt.Sprintf("CapEff:\t%016x", (uint64(1)<<(last+1)-1)&^(1<<unix.CAP_SYS_RESOURCE))
	}
	for _, want := range []string{caps, "Seccomp:\t0", "sys=rw", "\nc\n", "loopctl=open", "keymasks=0"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("privileged: %q lacks %q", r.Stdout, want)
		}
	}
	r = e.run(t, append(slices.Clip(hier), e.image, "--exec", "/bin/sh", "--", "-c", script)...)
	for _, bad := range []string{"Seccomp:\t0", "sys=rw", "loopctl=open", "keymasks=0"} {
		if strings.Contains(r.Stdout, bad) {
			t.Errorf("not privileged: %q holds %q", r.Stdout, bad)
		}
	}
}

// TestMaskedAndReadonlyPaths: --masked-paths and --readonly-paths replace
// the defaults; empty lists mask nothing.
func TestMaskedAndReadonlyPaths(t *testing.T) {
	e := newPodEnv(t)
	script := `wc -c < /proc/cpuinfo | sed 's/^/cpuinfo=/'; ls /etc | wc -l | sed 's/^/etc=/'; touch /tmp/x 2>/dev/null && echo tmp=rw || echo tmp=ro; grep -c ' /proc/keys ' /proc/self/mountinfo | sed 's/^/keymasks=/'; grep ' /proc/sys ' /proc/self/mountinfo | cut -d' ' -f6 | cut -d, -f1 | sed 's/^/procsys=/'`
	tests := []struct {
		args []string
		want []string
	}{
		{nil, []string{"tmp=rw", "keymasks=1", "procsys=ro"}},
		{[]string{"--masked-paths", "/proc/cpuinfo,/etc", "--readonly-paths", "/tmp"}, []string{"cpuinfo=0", "etc=0", "tmp=ro", "keymasks=0"}},
		{[]string{"--masked-paths="}, []string{"keymasks=0", "procsys=ro", "tmp=rw"}},
		{[]string{"--readonly-paths="}, []string{"keymasks=1", "tmp=rw"}},
	}
	for _, tc := range tests {
		r := mustSucceed(t, e.run(t, append(append([]string{e.image}, tc.args...), "--exec", "/bin/sh", "--", "-c", script)...))
		for _, w := range tc.want {
			if !strings.Contains(r.Stdout, w+"\n") {
				t.Errorf("%v: %q lacks %q", tc.args, r.Stdout, w)
			}
		}
		if len(tc.args) == 1 && tc.args[0] == "--readonly-paths=" && strings.Contains(r.Stdout, "procsys=") {
			t.Errorf("--readonly-paths=: /proc/sys still mounted read-only on its own: %q", r.Stdout)
		}
	}
	for _, bad := range []string{"--masked-paths=relative", "--readonly-paths=/a/../b", "--masked-paths=/"} {
		if r := e.run(t, e.image, bad, "--exec", "/bin/true"); r.Code != 254 || !strings.Contains(r.Stderr, "path") {
			t.Errorf("%s: %s", bad, r)
		}
	}
}

// TestHostPIDAndIPC: --host-pid and --host-ipc put the pod in the host's
// namespaces; what an app leaves running in the host's PID namespace ends
// with the pod.
func TestHostPIDAndIPC(t *testing.T) {
	e := newPodEnv(t)
	hostPID, _ := os.Readlink("/proc/self/ns/pid")
	hostIPC, _ := os.Readlink("/proc/self/ns/ipc")
	script := fmt.Sprintf(`readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc; [ -d /proc/%d ] && echo sees-host; sleep 1000 & echo left=$!`, os.Getpid())
	r := mustSucceed(t, e.run(t, "--host-pid", "--host-ipc", e.image, "--exec", "/bin/sh", "--", "-c", script))
	for _, want := range []string{hostPID, hostIPC, "sees-host"} {
		if !strings.Contains(r.Stdout, want+"\n") {
			t.Errorf("--host-pid --host-ipc: %q lacks %q", r.Stdout, want)
		}
	}
	_, left, _ := strings.Cut(r.Stdout, "left=")
	pid, err := strconv.Atoi(strings.TrimSpace(left))
	if err != nil {
		t.Fatalf("no pid of the process left running: %q", r.Stdout)
	}
	for i := 0; ; i++ {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.HasPrefix(string(b), "sleep\x001000") {
			break
		}
		if i == 500 {
			unix.Kill(pid, unix.SIGKILL)
			t.Fatalf("process %d the app left in the host's PID namespace outlived the pod", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r = mustSucceed(t, e.run(t, e.image, "--exec", "/bin/sh", "--", "-c", script))
	for _, bad := range []string{hostPID, hostIPC, "sees-host"} {
		if strings.Contains(r.Stdout, bad+"\n") {
			t.Errorf("default pod: %q holds %q", r.Stdout, bad)
		}
	}
}

// TestSeccompProfile: --seccomp-profile loads an OCI profile: its rules
// (argument comparisons included) answer with their action and errno, the
// rest with the default action; a bad profile is refused before the pod
// is made.
func TestSeccompProfile(t *testing.T) {
	e := newPodEnv(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	chmod := write("chmod.json", `{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
		"syscalls": [{"names": ["chmod", "fchmodat", "fchmodat2", "not_a_call_here"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
		{"names": ["fchmod"], "action": "SCMP_ACT_ERRNO"}]}`)
	// kill(pid, 0) is refused only for signal 0: the comparison on
	// argument 1 decides.
	args := write("args.json", `{"defaultAction": "SCMP_ACT_ALLOW",
		"syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]}]}`)
	script := `touch /tmp/f; chmod 600 /tmp/f 2>&1; grep '^Seccomp:' /proc/self/status`
	r := mustSucceed(t, e.run(t, e.image, "--seccomp-profile", chmod, "--exec", "/bin/sh", "--", "-c", script))
	if !strings.Contains(r.Stdout, "Function not implemented") || !strings.Contains(r.Stdout, "Seccomp:\t2") {
		t.Errorf("chmod under a profile refusing it with ENOSYS: %q", r.Stdout)
	}
	r = mustSucceed(t, e.run(t, e.image, "--seccomp-profile", args, "--exec", "/bin/sh", "--", "-c", `kill -0 $$ 2>&1 || echo refused; kill -CONT $$ && echo sent`))
	if !strings.Contains(r.Stdout, "refused") || !strings.Contains(r.Stdout, "sent") {
		t.Errorf("kill with signal 0 refused, others not: %q", r.Stdout)
	}
	for name, body := range map[string]string{
		"action.json":  `{"defaultAction": "SCMP_ACT_MAYBE"}`,
		"unknown.json": `{"defaultAction": "SCMP_ACT_ALLOW", "syscals": []}`,
		"notify.json":  `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}`,
		"index.json":   `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}`,
		"trunc.json":   `{"defaultAction": `,
	} {
		r := e.run(t, e.image, "--seccomp-profile", write(name, body), "--exec", "/bin/true")
		if r.Code != 254 || !strings.Contains(r.Stderr, "seccomp profile") || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
			t.Errorf("%s: want one line of refusal naming the profile, got\n%s", name, r)
		}
	}
	if r := e.run(t, e.image, "--seccomp-profile", chmod, "--seccomp", "unconfined", "--exec", "/bin/true"); r.Code != 254 {
		t.Errorf("--seccomp-profile with --seccomp accepted:\n%s", r)
	}
}

// TestVolumePropagation: a volume's mounts cross as its propagation says:
// private (the default) nothing, rslave the host's mounts into the app,
// rshared the app's mounts to the host too.
func TestVolumePropagation(t *testing.T) {
	e := newPodEnv(t)
	src := t.TempDir()
	if err := unix.Mount("tmpfs", src, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(src, unix.MNT_DETACH) })
	if err := unix.Mount("", src, "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(src, "sub"), 0o755)
	os.Mkdir(filepath.Join(src, "inner"), 0o755)
	// The app waits for a host mount's file, then mounts a tmpfs of its
	// own, writes a file in it and waits to be stopped.
	wait := `for i in $(seq 100); do [ -e /mnt/sub/marker ] && break; sleep 0.05; done; [ -e /mnt/sub/marker ] && echo seen || echo unseen; mount -t tmpfs t /mnt/inner 2>/dev/null && echo app > /mnt/inner/marker; echo done; sleep 1000`
	for _, tc := range []struct {
		opt        string
		seen, back bool
	}{{"", false, false}, {":rslave", true, false}, {":rshared", true, true}} {
		t.Run("propagation"+tc.opt, func(t *testing.T) {
			cmd, uuid := e.startPod(t, "--stop-timeout=1s", e.image, "--privileged", "--volume", src+":/mnt"+tc.opt, "--exec", "/bin/sh", "--", "-c", wait)
			sub := filepath.Join(src, "sub")
			if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
				t.Fatal(err)
			}
			defer unix.Unmount(sub, unix.MNT_DETACH)
			os.WriteFile(filepath.Join(sub, "marker"), []byte("host\n"), 0o644)
			e.waitLog(t, uuid, "done")
			logs := karman(t, e.dir, "logs", uuid).Stdout
			if got := strings.Contains(logs, "seen\n") && !strings.Contains(logs, "unseen"); got != tc.seen {
				t.Errorf("host mount seen in the app: %v, want %v (%q)", got, tc.seen, logs)
			}
			_, err := os.Stat(filepath.Join(src, "inner", "marker"))
			if got := err == nil; got != tc.back {
				t.Errorf("the app's mount seen on the host: %v, want %v", got, tc.back)
			}
			unix.Unmount(filepath.Join(src, "inner"), unix.MNT_DETACH)
			mustSucceed(t, karman(t, e.dir, "stop", uuid))
			cmd.Wait()
		})
	}
	// Propagation from a private mount is refused, naming the fix.
	priv := t.TempDir()
	r := e.run(t, e.image, "--volume", priv+":/mnt:rslave", "--exec", "/bin/true")
	if r.Code != 254 || !strings.Contains(r.Stderr, "--make-rshared") {
		t.Errorf("rslave from a private mount:\n%s", r)
	}
	// ro is recursive unless nonrecursive: then the submount below the
	// source stays writable.
	ro := t.TempDir()
	os.Mkdir(filepath.Join(ro, "sub"), 0o755)
	if err := unix.Mount("tmpfs", filepath.Join(ro, "sub"), "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(filepath.Join(ro, "sub"), unix.MNT_DETACH) })
	touch := "touch /v/top 2>/dev/null && echo top=rw || echo top=ro; touch /v/sub/x 2>/dev/null && echo sub=rw || echo sub=ro"
	for opt, want := range map[string]string{":ro": "top=ro\nsub=ro\n", ":ro,nonrecursive": "top=ro\nsub=rw\n", "": "top=rw\nsub=rw\n"} {
		r := mustSucceed(t, e.run(t, e.image, "--volume", ro+":/v"+opt, "--exec", "/bin/sh", "--", "-c", touch))
		if r.Stdout != want {
			t.Errorf("--volume %s:/v%s: %q, want %q", ro, opt, r.Stdout, want)
		}
	}
	if r := e.run(t, e.image, "--volume", ro+":/v:nonrecursive", "--exec", "/bin/true"); r.Code != 254 || !strings.Contains(r.Stderr, "nonrecursive is for ro") {
		t.Errorf("nonrecursive without ro: %s", r)
	}
	// A file is a volume too, read-only with its propagation.
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, []byte("a file\n"), 0o644)
	r = mustSucceed(t, e.run(t, e.image, "--volume", f+":/etc/file:ro,private", "--exec", "/bin/sh", "--", "-c", "cat /etc/file; echo x >> /etc/file || echo refused"))
	if r.Stdout != "a file\nrefused\n" {
		t.Errorf("a read-only file volume: %q", r.Stdout)
	}
}

// hierarchies are the cgroup hierarchies pods can be made in here, as
// run's options: the default, and the cgroup2 one of a hybrid host
// (where the device rules are an eBPF program).
func hierarchies() map[string][]string {
	h := map[string][]string{"default": nil}
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type != unix.CGROUP2_SUPER_MAGIC &&
		unix.Statfs("/sys/fs/cgroup/unified", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		h["unified"] = []string{"--cgroup-hierarchy=unified"}
	}
	return h
}

// TestDevices: --device makes a host device node in the app, allowed by
// the device cgroup with the given permissions only, on each hierarchy.
func TestDevices(t *testing.T) {
	for name, hier := range hierarchies() {
		t.Run(name, func(t *testing.T) { testDevices(t, hier) })
	}
}

func testDevices(t *testing.T, hier []string) {
	e := newPodEnv(t)
	testenv.RequireFile(t, "/dev/loop-control", "a host device outside the default allowlist")
	script := `ls -l /dev/myloopctl | tr -s ' ' | cut -d' ' -f1,5,6; head -c0 /dev/myloopctl 2>/dev/null && echo read=ok || echo read=refused; printf "" 2>/dev/null > /dev/myloopctl && echo write=ok || echo write=refused`
	r := mustSucceed(t, e.run(t, append(slices.Clip(hier), e.image, "--device", "/dev/loop-control:/dev/myloopctl:r", "--exec", "/bin/sh", "--", "-c", script)...))
	for _, want := range []string{"crw------- 10, 237", "read=ok", "write=refused"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("--device /dev/loop-control:/dev/myloopctl:r: %q lacks %q", r.Stdout, want)
		}
	}
	r = mustSucceed(t, e.run(t, append(slices.Clip(hier), e.image, "--exec", "/bin/sh", "--", "-c", "mknod /dev/myloopctl c 10 237; head -c0 /dev/myloopctl 2>/dev/null && echo read=ok || echo read=refused")...))
	if !strings.Contains(r.Stdout, "read=refused") {
		t.Errorf("a node made without --device opens: %q", r.Stdout)
	}
	for _, bad := range []string{"/dev/loop-control:/dev/pts/9", "/dev/loop-control:/etc/kmsg", "/dev/loop-control:/dev/k:rwx", "/etc/passwd", "relative", "/dev/loop-control:/dev/k:r:w"} {
		if r := e.run(t, append(slices.Clip(hier), e.image, "--device", bad, "--exec", "/bin/true")...); r.Code != 254 || !strings.Contains(r.Stderr, "--device") {
			t.Errorf("--device %s: %s", bad, r)
		}
	}
}

// TestAppAddSecurityOptions: an app added to a running pod gets the
// options as one started with the pod: a device, its own masked paths,
// groups, no_new_privs off, and the pod's host IPC namespace.
func TestAppAddSecurityOptions(t *testing.T) {
	e := newPodEnv(t)
	testenv.RequireFile(t, "/dev/loop-control", "a host device outside the default allowlist")
	hostIPC, _ := os.Readlink("/proc/self/ns/ipc")
	uuid := strings.TrimSpace(mustSucceed(t, karman(t, e.dir, "run", "--host-ipc", "--no-apps")).Stdout)
	t.Cleanup(func() { karman(t, e.dir, "stop", uuid) })
	mustSucceed(t, karman(t, e.dir, "app", "add", uuid, e.image, "--name", "sec",
		"--device", "/dev/loop-control:/dev/lc:r", "--masked-paths=/etc", "--group-add", "77", "--no-new-privs=false",
		"--exec", "/bin/sh", "--", "-c", `head -c0 /dev/lc && echo device=open; ls /etc | wc -l | sed 's/^/etc=/'; id -G | sed 's/^/groups=/'; grep NoNewPrivs /proc/self/status; readlink /proc/self/ns/ipc; echo end`))
	mustSucceed(t, karman(t, e.dir, "app", "start", uuid, "--app", "sec"))
	e.waitAppLog(t, uuid, "sec", "end", 1)
	logs := karman(t, e.dir, "logs", "--app", "sec", uuid).Stdout
	for _, want := range []string{"device=open", "etc=0", "groups=0 77", "NoNewPrivs:\t0", hostIPC} {
		if !strings.Contains(logs, want+"\n") {
			t.Errorf("added app: %q lacks %q", logs, want)
		}
	}
}
