package main

import (
	"path"
	"strings"
	"testing"

	"github.com/karman-project/karman/stage0"
)

// FuzzVolumeFlag checks --volume as `karman run` reads it: a value it
// accepts is one mount that, written back as
// SRC:DST[:ro][,nonrecursive][,PROPAGATION],
// reads the same;
// refusals are one line naming the flag. A pod spec with that mount that
// passes stage0's validation has absolute paths without NUL bytes (the
// kernel would refuse them only when the pod starts) and a target that
// is none of the paths the runtime mounts itself: /, /proc and below,
// /sys, /dev and below.
func FuzzVolumeFlag(f *testing.F) {
	for _, s := range []string{
		"/srv/data:/data", "/srv/data:/data:ro", "/srv/data:/data:rw", "/a:/b:rx", "/a", "/a:/b:ro:x", "a:b",
		"/srv:/", "/srv:/proc/sys", "/srv://proc", "/srv:/dev/../dev/shm", "/srv:/sys/", "/srv:/sysfs", "/srv:/a/../proc",
		"/srv\x00x:/data", "/a:/b:ro,rslave", "/a:/b:rshared", "/a:/b:ro,ro", "/a:/b:rslave,rshared", "/a:/b:private,rw", "/a:/b:,", "/a:/b:ro,nonrecursive", "/a:/b:nonrecursive", "/a:/b:rw,nonrecursive,rslave", "/srv:/data\x00", "::", ":/b", "/a:",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var a stage0.AppSpec
		err := (&appFlags{volumes: []string{s}}).apply(&a)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "--volume ") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("--volume %q: the error %q is not one line naming the flag", s, err)
			}
			return
		}
		if len(a.Mounts) != 1 {
			t.Fatalf("--volume %q gave %d mounts", s, len(a.Mounts))
		}
		m := a.Mounts[0]
		var opts []string
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		if m.NonRecursive {
			opts = append(opts, "nonrecursive")
		}
		if m.Propagation != "" {
			opts = append(opts, m.Propagation)
		}
		back := m.Source + ":" + m.Target
		if len(opts) > 0 {
			back += ":" + strings.Join(opts, ",")
		}
		var b stage0.AppSpec
		if err := (&appFlags{volumes: []string{back}}).apply(&b); err != nil || len(b.Mounts) != 1 || b.Mounts[0] != m {
			t.Fatalf("--volume %q = %+v, written back as %q reads %+v, %v", s, m, back, b.Mounts, err)
		}
		a.Image = "127.0.0.1:5000/app"
		spec := stage0.PodSpec{Apps: []stage0.AppSpec{a}, Net: "none"}
		if err := spec.Validate(); err != nil {
			return
		}
		ct := path.Clean(m.Target)
		switch {
		case !path.IsAbs(m.Source) || !path.IsAbs(m.Target):
			t.Fatalf("--volume %q: stage0 accepts a relative path", s)
		case strings.ContainsRune(m.Source+m.Target, 0):
			t.Fatalf("--volume %q: stage0 accepts a path with a NUL byte", s)
		case ct == "/" || ct == "/sys" || ct == "/proc" || ct == "/dev" || strings.HasPrefix(ct, "/proc/") || strings.HasPrefix(ct, "/dev/"):
			t.Fatalf("--volume %q: stage0 accepts the target %s, which the runtime mounts", s, ct)
		}
	})
}
