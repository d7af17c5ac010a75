//go:build linux

package layer

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Whiteout devices (char 0:0) may be created without CAP_MKNOD since Linux
// 5.8; the opaque xattr (trusted.*) always needs root.
func TestWhiteouts(t *testing.T) {
	t0 := baseTime.UnixNano()
	whiteoutNode := node{Mode: fs.ModeDevice | fs.ModeCharDevice, Nlink: 1, Mtime: t0}
	opaqueDir := func(mt int64) node {
		return node{Mode: fs.ModeDir | 0o755, Mtime: mt, Xattrs: map[string]string{"trusted.overlay.opaque": "y"}}
	}
	tests := []struct {
		name      string
		root      bool
		entries   []ent
		want      map[string]node // whole tree except "."
		whiteouts int
	}{{
		name:      "whiteout in implicit dir",
		entries:   []ent{regE("a/.wh.b", "", 0o644)},
		want:      map[string]node{"a": {Mode: fs.ModeDir | 0o755, Mtime: anyMtime}, "a/b": whiteoutNode},
		whiteouts: 1,
	}, {
		name:      "whiteout at root, any entry type",
		entries:   []ent{regE(".wh.top", "", 0o644), dirE(".wh.dir/", 0o755)},
		want:      map[string]node{"top": whiteoutNode, "dir": whiteoutNode},
		whiteouts: 2,
	}, {
		name: "whiteout replaces entries of the same layer",
		entries: []ent{regE("f", "f", 0o644), dirE("d/", 0o755), regE("d/x", "x", 0o644),
			regE(".wh.f", "", 0o644), regE(".wh.d", "", 0o644)},
		want:      map[string]node{"f": whiteoutNode, "d": whiteoutNode},
		whiteouts: 2,
	}, {
		name:      "opaque creates its dir",
		root:      true,
		entries:   []ent{regE("a/.wh..wh..opq", "", 0o644)},
		want:      map[string]node{"a": opaqueDir(anyMtime)},
		whiteouts: 1,
	}, {
		name:      "opaque kept when its dir entry follows",
		root:      true,
		entries:   []ent{regE("a/.wh..wh..opq", "", 0o644), dirE("a/", 0o755), regE("a/new", "n", 0o644)},
		want:      map[string]node{"a": opaqueDir(t0), "a/new": {Mode: 0o644, Content: "n", Nlink: 1, Mtime: t0}},
		whiteouts: 1,
	}, {
		name: "AUFS metadata skipped",
		entries: []ent{dirE(".wh..wh.plnk/", 0o700), regE(".wh..wh.plnk/1234.5678", "hl", 0o644),
			regE(".wh..wh.aufs", "", 0o644), regE("d/.wh..wh.orph", "", 0o644), regE("keep", "k", 0o644)},
		// Nothing of them is created, not even the parent "d".
		want: map[string]node{"keep": {Mode: 0o644, Content: "k", Nlink: 1, Mtime: t0}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root {
				requireRoot(t)
			}
			s := newSandbox(t)
			stats, err := extractBytes(t, mkTar(t, tc.entries...), s.dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			s.checkOutside(t)
			if stats.Whiteouts != tc.whiteouts {
				t.Errorf("Stats.Whiteouts = %d, want %d", stats.Whiteouts, tc.whiteouts)
			}
			got := snapshot(t, s.dir, "")
			delete(got, ".")
			for p, n := range got {
				if tc.want[p].Mtime == anyMtime {
					n.Mtime = anyMtime
				}
				if os.Geteuid() != 0 {
					n.Uid, n.Gid = 0, 0 // chown is skipped without root
				}
				got[p] = n
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("tree mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOpaqueRoot(t *testing.T) {
	requireRoot(t)
	s := newSandbox(t)
	if _, err := extractBytes(t, mkTar(t, regE(".wh..wh..opq", "", 0o644)), s.dir, Options{}); err != nil {
		t.Fatal(err)
	}
	s.checkOutside(t)
	if diff := cmp.Diff(map[string]string{"trusted.overlay.opaque": "y"}, listXattrs(t, s.dir)); diff != "" {
		t.Errorf("layer root xattrs (-want +got):\n%s", diff)
	}
}

func TestWhiteoutRefused(t *testing.T) {
	tests := []struct {
		name    string
		entry   string
		wantErr error
		wantMsg string
	}{
		{"whiteout used as parent", "a/.wh.b/c", ErrUnsupported, "used as a parent directory"},
		{"empty whiteout", "a/.wh.", ErrUnsupported, "whiteout without a name"},
		{"whiteout of dot", ".wh..", ErrUnsafePath, `whiteout of "."`},
		{"whiteout of dotdot", "x/.wh...", ErrUnsafePath, `whiteout of ".."`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSandbox(t)
			_, err := extractBytes(t, mkTar(t, regE(tc.entry, "", 0o644)), s.dir, Options{})
			checkErr(t, err, tc.wantErr)
			if !strings.Contains(err.Error(), tc.wantMsg) || !strings.Contains(err.Error(), tc.entry) {
				t.Errorf("error %q does not mention %q and the entry", err, tc.wantMsg)
			}
			s.checkOutside(t)
		})
	}
}

// TestWhiteoutWithoutRoot checks the error an unprivileged user gets for
// an opaque marker; run as root (as CI does), it runs itself as nobody.
func TestWhiteoutWithoutRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		runAsNobody(t)
		return
	}
	s := newSandbox(t)
	_, err := extractBytes(t, mkTar(t, regE("a/.wh..wh..opq", "", 0o644)), s.dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "requires root") {
		t.Errorf("opaque marker without root: %v, want an error saying root is required", err)
	}
	s.checkOutside(t)
}

// runAsNobody runs test t again in a child test process as user nobody
// (65534), from a copy of the test binary that nobody may execute, and
// fails t unless it passes there.
func runAsNobody(t *testing.T) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "karman-layer-nobody-") // not t.TempDir: its parent is root's only
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "layer.test")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("%s as nobody: %v\n%s", t.Name(), err, out)
	}
}
