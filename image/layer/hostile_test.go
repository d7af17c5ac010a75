//go:build linux

package layer

import (
	"archive/tar"
	"os"
	"strings"
	"testing"
)

// hostileCase is a layer that tries to reach outside the layer directory.
type hostileCase struct {
	name    string
	root    bool                       // needs root
	pre     func(*testing.T, *sandbox) // prepares the layer dir before extraction
	entries func(*sandbox) []ent       // the layer
	wantErr error                      // nil, errAny or a sentinel
	check   func(*testing.T, *sandbox) // extra assertions inside the layer
}

func runHostile(t *testing.T, cases []hostileCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root {
				requireRoot(t)
			}
			s := newSandbox(t)
			if tc.pre != nil {
				tc.pre(t, s)
			}
			_, err := extractBytes(t, mkTar(t, tc.entries(s)...), s.dir, Options{})
			if err != nil {
				t.Logf("Extract: %v", err)
			}
			s.checkOutside(t)
			checkErr(t, err, tc.wantErr)
			if err != nil && !strings.Contains(err.Error(), "layer entry") {
				t.Errorf("error %q does not name the entry", err)
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

// wantFile asserts that rel inside the layer is a regular file with content.
func wantFile(rel, content string) func(*testing.T, *sandbox) {
	return func(t *testing.T, s *sandbox) {
		t.Helper()
		fi, err := os.Lstat(s.inside(rel))
		if err != nil {
			t.Fatalf("inside %s: %v", rel, err)
		}
		if !fi.Mode().IsRegular() {
			t.Fatalf("inside %s: mode %v, want a regular file", rel, fi.Mode())
		}
		if b, _ := os.ReadFile(s.inside(rel)); string(b) != content {
			t.Errorf("inside %s: content %q, want %q", rel, b, content)
		}
	}
}

func noAbs(p string) string { return strings.TrimPrefix(p, "/") }

// Requirement 1: ".." escapes are refused; ".." that stays inside is fine.
func TestHostileDotDot(t *testing.T) {
	runHostile(t, []hostileCase{
		{name: "file ../outside/x", wantErr: ErrUnsafePath, entries: func(*sandbox) []ent {
			return []ent{regE("../outside/x", "pwned", 0o644)}
		}},
		{name: "file replacing ../outside/file", wantErr: ErrUnsafePath, entries: func(*sandbox) []ent {
			return []ent{regE("../outside/file", "pwned", 0o644)}
		}},
		{name: "nested a/../../outside/x", wantErr: ErrUnsafePath, entries: func(*sandbox) []ent {
			return []ent{dirE("a/", 0o755), regE("a/../../outside/x", "pwned", 0o644)}
		}},
		{name: "absolute /../neighbor", wantErr: ErrUnsafePath, entries: func(*sandbox) []ent {
			return []ent{regE("/../neighbor", "pwned", 0o644)}
		}},
		{name: "bare ..", wantErr: ErrUnsafePath, entries: func(*sandbox) []ent {
			return []ent{dirE("..", 0o777)}
		}},
		{name: "dir ../evil", wantErr: ErrUnsafePath, entries: func(*sandbox) []ent {
			return []ent{dirE("../evil/", 0o755)}
		}},
		{name: "symlink ../evil", wantErr: ErrUnsafePath, entries: func(*sandbox) []ent {
			return []ent{symE("../evil", "/")}
		}},
		{name: "hardlink named ../evil", wantErr: ErrUnsafePath, entries: func(*sandbox) []ent {
			return []ent{regE("f", "x", 0o644), linkE("../evil", "f")}
		}},
		{name: "fifo ../evil", wantErr: ErrUnsafePath, entries: func(*sandbox) []ent {
			return []ent{devE(tar.TypeFifo, "../evil", 0, 0, 0o644)}
		}},
		{name: "whiteout ../.wh.outside", wantErr: ErrUnsafePath, entries: func(*sandbox) []ent {
			return []ent{regE("../.wh.outside", "", 0o644)}
		}},
		{name: "whiteout of ..", wantErr: ErrUnsafePath, entries: func(*sandbox) []ent {
			return []ent{regE("a/.wh...", "", 0o644)}
		}},
		{name: "a/../b stays inside", check: wantFile("b", "ok"), entries: func(*sandbox) []ent {
			return []ent{dirE("a/", 0o755), regE("a/../b", "ok", 0o644)}
		}},
	})
}

// Requirement 2: absolute names are relative to the layer dir; root entries
// only set its metadata.
func TestHostileAbsoluteNames(t *testing.T) {
	runHostile(t, []hostileCase{
		{name: "absolute path of the outside file", entries: func(s *sandbox) []ent {
			return []ent{regE(s.outsideFile, "pwned", 0o644)}
		}, check: func(t *testing.T, s *sandbox) {
			wantFile(noAbs(s.outsideFile), "pwned")(t, s)
		}},
		{name: "absolute /etc/x", check: wantFile("etc/x", "x"), entries: func(*sandbox) []ent {
			return []ent{regE("/etc/x", "x", 0o644)}
		}},
		{name: "root entries", entries: func(*sandbox) []ent {
			return []ent{dirE("/", 0o750), dirE("./", 0o751), dirE(".", 0o700), regE("./f", "f", 0o644)}
		}, check: func(t *testing.T, s *sandbox) {
			fi, err := os.Stat(s.dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != 0o700 {
				t.Errorf("layer root mode = %#o, want 0700 from the last root entry", got)
			}
			wantFile("f", "f")(t, s)
		}},
		{name: "file as root", wantErr: ErrUnsafePath, entries: func(*sandbox) []ent {
			return []ent{regE(".", "x", 0o644)}
		}},
		{name: "symlink as root", wantErr: ErrUnsafePath, entries: func(*sandbox) []ent {
			return []ent{symE("/", "../outside")}
		}},
	})
}

// Requirement 3: writing through symlinks never leaves the layer.
func TestHostileSymlinkTraversal(t *testing.T) {
	runHostile(t, []hostileCase{
		{name: "evil -> / then evil/<outside path>", entries: func(s *sandbox) []ent {
			return []ent{symE("evil", "/"), regE("evil/"+noAbs(s.outside)+"/pwned", "pwned", 0o644)}
		}, check: func(t *testing.T, s *sandbox) {
			wantFile(noAbs(s.outside)+"/pwned", "pwned")(t, s)
		}},
		{name: "evil -> / then overwrite evil/<outside file>", entries: func(s *sandbox) []ent {
			return []ent{symE("evil", "/"), regE("evil/"+noAbs(s.outsideFile), "pwned", 0o644)}
		}, check: func(t *testing.T, s *sandbox) {
			wantFile(noAbs(s.outsideFile), "pwned")(t, s)
		}},
		{name: "evil -> ../outside then evil/pwned", check: wantFile("outside/pwned", "pwned"), entries: func(*sandbox) []ent {
			return []ent{dirE("outside/", 0o755), symE("evil", "../outside"), regE("evil/pwned", "pwned", 0o644)}
		}},
		{name: "dangling evil -> ../outside", wantErr: errAny, entries: func(*sandbox) []ent {
			// Dangling symlinks are not turned into directories.
			return []ent{symE("evil", "../outside"), regE("evil/pwned", "pwned", 0o644)}
		}},
		{name: "evil -> ../.. then evil/outside/file", check: wantFile("outside/file", "pwned"), entries: func(*sandbox) []ent {
			return []ent{symE("evil", "../../../../.."), regE("evil/outside/file", "pwned", 0o644)}
		}},
		{name: "evil -> absolute outside dir", wantErr: errAny, entries: func(s *sandbox) []ent {
			// Resolved in-root the target does not exist.
			return []ent{symE("evil", s.outside), regE("evil/pwned", "pwned", 0o644)}
		}},
		{name: "chained symlinks", check: wantFile("outside/pwned", "pwned"), entries: func(*sandbox) []ent {
			return []ent{dirE("outside/", 0o755), symE("a", "b"), symE("b", "c/.."), dirE("c/", 0o755), symE("c/up", "../../.."),
				symE("b2", "c/up/../outside"), regE("a/b2/pwned", "pwned", 0o644)}
		}},
		{name: "symlink inside a directory", check: wantFile("outside/sub/deep", "pwned"), entries: func(*sandbox) []ent {
			return []ent{dirE("d/", 0o755), symE("d/up", "../../.."), regE("d/up/outside/sub/deep", "pwned", 0o644)}
		}},
		{name: "directory entry through symlink", entries: func(*sandbox) []ent {
			return []ent{dirE("outside/", 0o755), symE("evil", "../outside"), dirE("evil/newdir/", 0o700), dirE("evil/sub/", 0o700)}
		}, check: func(t *testing.T, s *sandbox) {
			if fi, err := os.Lstat(s.inside("outside/newdir")); err != nil || !fi.IsDir() {
				t.Errorf("outside/newdir inside the layer: %v %v", fi, err)
			}
		}},
		{name: "hardlink and symlink entries through symlink", entries: func(*sandbox) []ent {
			return []ent{regE("f", "f", 0o644), dirE("outside/", 0o755), symE("evil", "../outside"),
				linkE("evil/hl", "f"), symE("evil/sl", "/etc/passwd")}
		}, check: func(t *testing.T, s *sandbox) {
			wantFile("outside/hl", "f")(t, s)
			if got, _ := os.Readlink(s.inside("outside/sl")); got != "/etc/passwd" {
				t.Errorf("outside/sl inside the layer -> %q", got)
			}
		}},
		{name: "fifo through symlink", check: func(t *testing.T, s *sandbox) {
			if fi, err := os.Lstat(s.inside("outside/fifo")); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
				t.Errorf("outside/fifo inside the layer: %v %v", fi, err)
			}
		}, entries: func(*sandbox) []ent {
			return []ent{dirE("outside/", 0o755), symE("evil", "../outside"), devE(tar.TypeFifo, "evil/fifo", 0, 0, 0o644)}
		}},
		{name: "proc magic link", wantErr: errAny, entries: func(*sandbox) []ent {
			return []ent{symE("evil", "/proc/self/cwd"), regE("evil/pwned", "pwned", 0o644)}
		}},
		{name: "symlink loop", wantErr: errAny, entries: func(*sandbox) []ent {
			return []ent{dirE("outside/", 0o755), symE("a", "b"), symE("b", "a"), regE("a/x", "x", 0o644)}
		}},
		{name: "symlink present before extraction", pre: func(t *testing.T, s *sandbox) {
			if err := os.Mkdir(s.inside("outside"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(s.outside, s.inside("pre")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("../outside", s.inside("prerel")); err != nil {
				t.Fatal(err)
			}
		}, wantErr: errAny, entries: func(*sandbox) []ent {
			return []ent{regE("prerel/pwned", "pwned", 0o644), regE("pre/pwned", "pwned", 0o644)}
		}, check: wantFile("outside/pwned", "pwned")},
	})
}

// Requirement 4: an entry whose name is an existing symlink replaces it.
func TestHostileReplaceSymlink(t *testing.T) {
	isSymlinkTo := func(rel, target string) func(*testing.T, *sandbox) {
		return func(t *testing.T, s *sandbox) {
			if got, err := os.Readlink(s.inside(rel)); err != nil || got != target {
				t.Errorf("%s -> %q (%v), want %q", rel, got, err, target)
			}
		}
	}
	runHostile(t, []hostileCase{
		{name: "file over absolute symlink", check: wantFile("link", "new"), entries: func(s *sandbox) []ent {
			return []ent{symE("link", s.outsideFile), regE("link", "new", 0o600)}
		}},
		{name: "file over relative symlink", check: wantFile("link", "new"), entries: func(*sandbox) []ent {
			return []ent{symE("link", "../outside/file"), regE("link", "new", 0o600)}
		}},
		{name: "file over pre-existing symlink", check: wantFile("link", "new"), pre: func(t *testing.T, s *sandbox) {
			if err := os.Symlink(s.outsideFile, s.inside("link")); err != nil {
				t.Fatal(err)
			}
		}, entries: func(*sandbox) []ent {
			return []ent{regE("link", "new", 0o4755)}
		}},
		{name: "dir over symlink to outside dir", entries: func(*sandbox) []ent {
			return []ent{symE("link", "../outside"), dirE("link/", 0o700).with(xattr("user.x", "y"))}
		}, check: func(t *testing.T, s *sandbox) {
			if fi, err := os.Lstat(s.inside("link")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
				t.Errorf("link: %v %v, want a 0700 directory", fi, err)
			}
		}},
		{name: "hardlink over symlink", check: wantFile("link", "real"), entries: func(s *sandbox) []ent {
			return []ent{regE("real", "real", 0o644), symE("link", s.outsideFile), linkE("link", "real")}
		}},
		{name: "symlink over symlink", check: isSymlinkTo("link", "real"), entries: func(s *sandbox) []ent {
			return []ent{symE("link", s.outsideFile), symE("link", "real")}
		}},
		{name: "fifo over symlink", entries: func(s *sandbox) []ent {
			return []ent{symE("link", s.outsideFile), devE(tar.TypeFifo, "link", 0, 0, 0o600)}
		}, check: func(t *testing.T, s *sandbox) {
			if fi, err := os.Lstat(s.inside("link")); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
				t.Errorf("link: %v %v, want a FIFO", fi, err)
			}
		}},
		{name: "char device over symlink", root: true, entries: func(s *sandbox) []ent {
			return []ent{symE("link", s.outsideFile), devE(tar.TypeChar, "link", 1, 3, 0o666)}
		}, check: func(t *testing.T, s *sandbox) {
			if fi, err := os.Lstat(s.inside("link")); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
				t.Errorf("link: %v %v, want a char device", fi, err)
			}
		}},
		{name: "whiteout over symlink", root: true, entries: func(s *sandbox) []ent {
			return []ent{symE("link", s.outsideFile), regE(".wh.link", "", 0o644)}
		}},
		{name: "dir tree with escaping symlinks replaced by file", check: wantFile("d", "file"), entries: func(*sandbox) []ent {
			return []ent{dirE("d/", 0o755), symE("d/up", "../../outside"), symE("d/abs", "/"),
				dirE("d/sub/", 0o755), symE("d/sub/x", "../../../outside/file"), regE("d", "file", 0o644)}
		}},
	})
}

// Requirement 5: hardlink targets are resolved inside the layer only.
func TestHostileHardlinks(t *testing.T) {
	sameInode := func(a, b string) func(*testing.T, *sandbox) {
		return func(t *testing.T, s *sandbox) {
			fa, errA := os.Lstat(s.inside(a))
			fb, errB := os.Lstat(s.inside(b))
			if errA != nil || errB != nil || !os.SameFile(fa, fb) {
				t.Errorf("%s and %s are not the same inode (%v, %v)", a, b, errA, errB)
			}
		}
	}
	runHostile(t, []hostileCase{
		{name: "target ../outside/file", wantErr: ErrUnsafePath, entries: func(*sandbox) []ent {
			return []ent{linkE("hl", "../outside/file")}
		}},
		{name: "target a/../../outside/file", wantErr: ErrUnsafePath, entries: func(*sandbox) []ent {
			return []ent{dirE("a/", 0o755), linkE("hl", "a/../../outside/file")}
		}},
		{name: "target absolute host path", wantErr: errAny, entries: func(s *sandbox) []ent {
			return []ent{linkE("hl", s.outsideFile)}
		}},
		{name: "target absolute path present inside", check: sameInode("hl", "etc/passwd"), entries: func(*sandbox) []ent {
			return []ent{regE("etc/passwd", "inside", 0o644), linkE("hl", "/etc/passwd")}
		}},
		{name: "target through symlink to outside", wantErr: errAny, entries: func(*sandbox) []ent {
			return []ent{symE("evil", "../outside"), linkE("hl", "evil/file")}
		}},
		{name: "target through absolute symlink", wantErr: errAny, entries: func(s *sandbox) []ent {
			return []ent{symE("evil", s.outside), linkE("hl", "evil/file")}
		}},
		{name: "target is a symlink to outside file", entries: func(s *sandbox) []ent {
			return []ent{symE("sl", s.outsideFile), linkE("hl", "sl")}
		}, check: func(t *testing.T, s *sandbox) {
			sameInode("hl", "sl")(t, s)
			if got, err := os.Readlink(s.inside("hl")); err != nil || got != s.outsideFile {
				t.Errorf("hl -> %q (%v), want the symlink itself", got, err)
			}
		}},
		{name: "target is a directory", wantErr: ErrUnsafePath, entries: func(*sandbox) []ent {
			return []ent{dirE("d/", 0o755), linkE("hl", "d")}
		}},
		{name: "target is a symlink to outside directory", check: sameInode("hl", "sl"), entries: func(*sandbox) []ent {
			return []ent{symE("sl", "../outside"), linkE("hl", "sl")}
		}},
		{name: "target is the root", wantErr: ErrUnsafePath, entries: func(*sandbox) []ent {
			return []ent{linkE("hl", "./")}
		}},
		{name: "target missing", wantErr: errAny, entries: func(*sandbox) []ent {
			return []ent{linkE("hl", "nope")}
		}},
		{name: "link to itself", check: wantFile("f", "f"), entries: func(*sandbox) []ent {
			return []ent{regE("f", "f", 0o644), linkE("f", "f")}
		}},
		{name: "absolute link name", check: sameInode("outside/file", "f"), entries: func(s *sandbox) []ent {
			return []ent{regE("f", "f", 0o644), linkE("/outside/file", "f")}
		}},
	})
}

// Requirement 7 (hostile side): replacing a directory removes its tree
// without following symlinks inside it.
func TestHostileReplaceDirTree(t *testing.T) {
	runHostile(t, []hostileCase{
		{name: "symlink replaces dir with escaping links", entries: func(*sandbox) []ent {
			return []ent{dirE("d/", 0o755), symE("d/out", "../../outside"), regE("d/f", "f", 0o644), symE("d", "/")}
		}, check: func(t *testing.T, s *sandbox) {
			if got, _ := os.Readlink(s.inside("d")); got != "/" {
				t.Errorf("d -> %q, want /", got)
			}
		}},
		{name: "pre-existing dir with outside symlink replaced", pre: func(t *testing.T, s *sandbox) {
			if err := os.Mkdir(s.inside("d"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(s.outside, s.inside("d/out")); err != nil {
				t.Fatal(err)
			}
		}, check: wantFile("d", "f"), entries: func(*sandbox) []ent {
			return []ent{regE("d", "f", 0o644)}
		}},
	})
	// The removed tree really is gone and nothing leaked.
	s := newSandbox(t)
	data := mkTar(t, dirE("x/", 0o755), regE("x/a", "a", 0o644), dirE("x/y/", 0o755), regE("x/y/b", "b", 0o644), regE("x", "file", 0o644))
	if _, err := extractBytes(t, data, s.dir, Options{}); err != nil {
		t.Fatal(err)
	}
	s.checkOutside(t)
	got := snapshot(t, s.dir, "")
	if _, ok := got["x/a"]; ok || len(got) != 2 {
		t.Errorf("layer after replacing x: %v", got)
	}
}
