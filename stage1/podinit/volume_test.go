package podinit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/stage1/poddir"
	"github.com/karman-project/karman/tests/testenv"
)

func TestCheckMountTarget(t *testing.T) {
	for target, owned := range map[string]bool{
		"/": true, "/proc": true, "/proc/sys": true, "/proc/1/root": true, "/sys": true, "/dev": true, "/dev/shm": true,
		"/proc/": true, "/data/../proc": true, "//dev//pts": true, "/x/../": true,
		"/data": false, "/procfs": false, "/sys/fs/cgroup": false, "/device": false, "/etc/hosts": false, "/mnt/proc": false,
	} {
		err := poddir.CheckMountTarget(target)
		if owned != errors.Is(err, poddir.ErrRuntimePath) {
			t.Errorf("CheckMountTarget(%q) = %v, want refused %v", target, err, owned)
		}
		if err != nil && !strings.Contains(err.Error(), target) {
			t.Errorf("CheckMountTarget(%q) = %v: does not name the target", target, err)
		}
	}
}

func TestMountCheck(t *testing.T) {
	for _, tc := range []struct {
		m    poddir.Mount
		want string // "" when valid
	}{
		{poddir.Mount{Source: "/srv/vol/a", Target: "/a"}, ""},
		{poddir.Mount{Source: "/srv/vol/a", Target: "/a", SourceRoot: "/srv/vol"}, ""},
		{poddir.Mount{Source: "/srv/vol", Target: "/a", SourceRoot: "/srv/vol/"}, ""},
		{poddir.Mount{Source: "/srv/x", Target: "/a", SourceRoot: "/"}, ""},
		{poddir.Mount{Source: "rel", Target: "/a"}, "absolute"},
		{poddir.Mount{Source: "/srv/vol/a", Target: "rel"}, "absolute"},
		{poddir.Mount{Source: "/srv/volume", Target: "/a", SourceRoot: "/srv/vol"}, "leads out"},
		{poddir.Mount{Source: "/srv/vol/../etc", Target: "/a", SourceRoot: "/srv/vol"}, "leads out"},
		{poddir.Mount{Source: "/srv/vol/a", Target: "/a", SourceRoot: "srv/vol"}, "absolute"},
		{poddir.Mount{Source: "/srv/vol/a", Target: "/proc/sys"}, "runtime mounts"},
	} {
		err := tc.m.Check()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.m, err, tc.want)
		}
	}
}

// volumeDir makes a volume directory: ok/f ("inside"), in -> ok (a
// symlink that stays inside), abs -> / and up -> ../.. (that lead out),
// magic -> /proc/self/root, and a directory outside it with f
// ("outside"), which out -> OUTSIDE points to.
func volumeDir(t *testing.T) (dir, outside string) {
	t.Helper()
	base := t.TempDir()
	dir, outside = filepath.Join(base, "vol"), filepath.Join(base, "outside")
	for _, d := range []string{filepath.Join(dir, "ok"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, content := range map[string]string{filepath.Join(dir, "ok/f"): "inside", filepath.Join(outside, "f"): "outside"} {
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range map[string]string{"in": "ok", "abs": "/", "up": "../..", "magic": "/proc/self/root", "out": outside} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir, outside
}

func TestOpenSourceBeneath(t *testing.T) {
	dir, outside := volumeDir(t)
	for rel, want := range map[string]error{
		".": nil, "ok": nil, "ok/f": nil, "in/f": nil, "ok/../in/f": nil,
		"abs": poddir.ErrOutsideRoot, "abs/etc": poddir.ErrOutsideRoot, "up": poddir.ErrOutsideRoot, "ok/../up/vol": poddir.ErrOutsideRoot,
		"magic": poddir.ErrOutsideRoot, "out/f": poddir.ErrOutsideRoot, "missing": unix.ENOENT, "ok/f/x": unix.ENOTDIR,
	} {
		src := filepath.Join(dir, rel)
		fd, err := poddir.OpenSource(poddir.Mount{Source: src, Target: "/v", SourceRoot: dir})
		if want == nil && err != nil || want != nil && !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", rel, err, want)
		}
		if err != nil {
			if !strings.Contains(err.Error(), src) {
				t.Errorf("%s: %v does not name the source", rel, err)
			}
			continue
		}
		at, _ := os.Readlink(procFD(fd))
		unix.Close(fd)
		if _, ok := poddir.Beneath(dir, at); !ok {
			t.Errorf("%s resolved to %s, outside %s", rel, at, dir)
		}
	}
	// Without SourceRoot (a volume the host's root gave on the command
	// line), symlinks are followed as the host does.
	fd, err := poddir.OpenSource(poddir.Mount{Source: filepath.Join(dir, "out/f"), Target: "/v"})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if at, _ := os.Readlink(procFD(fd)); at != filepath.Join(outside, "f") {
		t.Errorf("a host volume resolved to %s", at)
	}
}

// inMountNamespace runs f on a locked OS thread in a private mount
// namespace of its own, which goes away with the thread: every mount f
// makes is gone when it returns.
func inMountNamespace(t *testing.T, f func()) {
	t.Helper()
	testenv.RequireRoot(t, "volumes are mounts")
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			t.Errorf("make mounts private: %v", err)
			return
		}
		f()
	}()
	<-done
}

// TestBindMountBeneath: a volume's source is mounted only if it resolves
// beneath its SourceRoot, and what is mounted is what was resolved, even
// while another thread swaps an intermediate directory for a symlink to
// outside (renameat2 RENAME_EXCHANGE, so the path always exists). The
// outside directory's file never shows in the app.
func TestBindMountBeneath(t *testing.T) {
	dir, outside := volumeDir(t)
	app := t.TempDir()
	// dir/sub is a directory holding data/f ("inside"); dir/alt is a
	// symlink to outside, which holds data/f ("outside") too.
	if err := os.MkdirAll(filepath.Join(dir, "sub/data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(outside, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	for p, content := range map[string]string{filepath.Join(dir, "sub/data/f"): "inside", filepath.Join(outside, "data/f"): "outside"} {
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(dir, "alt")); err != nil {
		t.Fatal(err)
	}
	swap := func() error {
		return unix.Renameat2(unix.AT_FDCWD, filepath.Join(dir, "sub"), unix.AT_FDCWD, filepath.Join(dir, "alt"), unix.RENAME_EXCHANGE)
	}
	m := poddir.Mount{Source: filepath.Join(dir, "sub/data"), Target: "/vol", SourceRoot: dir, ReadOnly: true}
	inMountNamespace(t, func() {
		r, err := openRoot(app)
		if err != nil {
			t.Error(err)
			return
		}
		defer r.close()
		target := filepath.Join(app, "vol")
		// mountOnce mounts m and returns what the app sees in /vol/f.
		mountOnce := func() (string, error) {
			if err := bindMount(r, m); err != nil {
				return "", err
			}
			defer unix.Unmount(target, unix.MNT_DETACH)
			if err := os.WriteFile(filepath.Join(target, "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
				t.Errorf("writing into a read-only volume: %v, want EROFS", err)
			}
			b, err := os.ReadFile(filepath.Join(target, "f"))
			return string(b), err
		}
		// Still: sub a directory, then a symlink to outside.
		if got, err := mountOnce(); err != nil || got != "inside" {
			t.Errorf("volume below its root: %q, %v", got, err)
		}
		if err := swap(); err != nil {
			t.Error(err)
			return
		}
		if got, err := mountOnce(); !errors.Is(err, poddir.ErrOutsideRoot) {
			t.Errorf("volume through a symlink to outside: saw %q, %v; want ErrOutsideRoot", got, err)
		}
		// Racing: another thread swaps them as fast as it can.
		stop, swapped := make(chan struct{}), make(chan int)
		go func() {
			n := 0
			for ; n < 1_000_000; n++ {
				select {
				case <-stop:
					swapped <- n
					return
				default:
				}
				if err := swap(); err != nil {
					t.Error(err)
					break
				}
			}
			<-stop
			swapped <- n
		}()
		mounted, refused := 0, 0
		for range 300 {
			got, err := mountOnce()
			switch {
			case err == nil && got == "inside":
				mounted++
			case err == nil:
				t.Errorf("the volume showed %q: it was mounted from outside its root", got)
			case errors.Is(err, poddir.ErrOutsideRoot), errors.Is(err, unix.ENOENT):
				refused++
			default:
				t.Errorf("mount: %v", err)
			}
		}
		close(stop)
		t.Logf("%d swaps: %d mounts from inside, %d refused", <-swapped, mounted, refused)
	})
}

// TestBindMountTargetInRoot: an image's symlinks lead a volume's target
// within the app's root, never onto the host, and never onto a path the
// runtime mounts.
func TestBindMountTargetInRoot(t *testing.T) {
	dir, _ := volumeDir(t)
	host := t.TempDir() // what an absolute symlink in the image names
	app := t.TempDir()
	for name, target := range map[string]string{"abs": host, "up": "../../../../../../../..", "toproc": "/proc", "todev": "../dev/shm"} {
		if err := os.Symlink(target, filepath.Join(app, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"proc", "dev/shm", strings.TrimPrefix(host, "/")} {
		if err := os.MkdirAll(filepath.Join(app, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src := filepath.Join(dir, "ok")
	top := fmt.Sprintf("karman-volume-test-%d", os.Getpid()) // where "up" would lead on the host
	inMountNamespace(t, func() {
		r, err := openRoot(app)
		if err != nil {
			t.Error(err)
			return
		}
		defer r.close()
		for target, lands := range map[string]string{"/abs/x": filepath.Join(host, "x"), "/up/" + top: "/" + top} {
			if err := bindMount(r, poddir.Mount{Source: src, Target: target, SourceRoot: dir}); err != nil {
				t.Errorf("%s: %v", target, err)
				continue
			}
			in := filepath.Join(app, lands)
			if b, err := os.ReadFile(filepath.Join(in, "f")); err != nil || string(b) != "inside" {
				t.Errorf("%s: the volume is not at %s in the app: %q, %v", target, lands, b, err)
			}
			unix.Unmount(in, unix.MNT_DETACH)
		}
		if _, err := os.Lstat(filepath.Join(host, "x")); err == nil {
			t.Errorf("a volume target was created on the host, in %s", host)
		}
		for _, target := range []string{"/toproc", "/todev/x", "/toproc/sys", "/proc/x", "/"} {
			if err := bindMount(r, poddir.Mount{Source: src, Target: target, SourceRoot: dir}); !errors.Is(err, poddir.ErrRuntimePath) || !strings.Contains(err.Error(), target) {
				t.Errorf("%s: %v, want ErrRuntimePath naming it", target, err)
			}
		}
	})
	if _, err := os.Lstat("/" + top); err == nil {
		t.Errorf("a volume target was created on the host: /%s", top)
		os.Remove("/" + top)
	}
}
