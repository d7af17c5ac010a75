//go:build linux

package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/tests/testenv"
)

// baseTime is the default mtime of test entries.
var baseTime = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)

func requireRoot(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t, "creates device nodes, sets ownership or trusted.* xattrs")
}

// ent is one tar entry to write.
type ent struct {
	hdr  tar.Header
	body string
}

func regE(name, body string, mode int64) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}, body: body}
}

func dirE(name string, mode int64) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}}
}

func symE(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

func linkE(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}}
}

func devE(typ byte, name string, major, minor int64, mode int64) ent {
	return ent{hdr: tar.Header{Typeflag: typ, Name: name, Devmajor: major, Devminor: minor, Mode: mode}}
}

// with applies f to the entry's header.
func (e ent) with(f func(h *tar.Header)) ent {
	f(&e.hdr)
	return e
}

func xattr(name, value string) func(h *tar.Header) {
	return func(h *tar.Header) {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords["SCHILY.xattr."+name] = value
	}
}

// mkTar builds an uncompressed PAX tar stream in memory.
func mkTar(t testing.TB, entries ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			// Written as is: archive/tar refuses other fields.
		} else if h.ModTime.IsZero() {
			h.ModTime = baseTime
		}
		if h.Format == tar.FormatUnknown && h.Typeflag != tar.TypeXGlobalHeader {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("WriteHeader(%q): %v", h.Name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatalf("Write(%q): %v", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func extractBytes(t testing.TB, data []byte, dir string, opts Options) (Stats, error) {
	t.Helper()
	return Extract(context.Background(), bytes.NewReader(data), dir, opts)
}

// node is what a test knows about one filesystem entry.
type node struct {
	Mode    fs.FileMode
	Content string
	Target  string
	Nlink   uint64
	Uid     uint32
	Gid     uint32
	Rdev    uint64
	Mtime   int64 // nanoseconds
	Xattrs  map[string]string
}

// snapshot records everything under root (relative paths, "." is root)
// except the subtree skip.
func snapshot(t testing.TB, root, skip string) map[string]node {
	t.Helper()
	tree := map[string]node{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		n := node{
			Mode:  fi.Mode(),
			Nlink: st.Nlink,
			Uid:   st.Uid,
			Gid:   st.Gid,
			Rdev:  st.Rdev,
			Mtime: st.Mtim.Nano(),
		}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			n.Content = string(b)
		case fi.Mode()&fs.ModeSymlink != 0:
			if n.Target, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.IsDir():
			n.Nlink = 0 // filesystem dependent
		}
		n.Xattrs = listXattrs(t, p)
		rel, _ := filepath.Rel(root, p)
		tree[rel] = n
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", root, err)
	}
	return tree
}

// listXattrs returns the user.*, trusted.* and security.capability xattrs.
func listXattrs(t testing.TB, p string) map[string]string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		return nil
	}
	var m map[string]string
	for name := range strings.SplitSeq(string(buf[:n]), "\x00") {
		if !strings.HasPrefix(name, "user.") && !strings.HasPrefix(name, "trusted.") && name != "security.capability" {
			continue
		}
		val := make([]byte, 64<<10)
		vn, err := unix.Lgetxattr(p, name, val)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", p, name, err)
		}
		if m == nil {
			m = map[string]string{}
		}
		m[name] = string(val[:vn])
	}
	return m
}

// sandbox is a temp dir holding the layer dir plus an "outside" area that no
// extraction may touch.
type sandbox struct {
	base        string // t.TempDir()
	dir         string // base/layer, the extraction target
	outside     string // base/outside
	outsideFile string // base/outside/file
	before      map[string]node
}

func newSandbox(t testing.TB) *sandbox {
	t.Helper()
	base := t.TempDir()
	s := &sandbox{
		base:        base,
		dir:         filepath.Join(base, "layer"),
		outside:     filepath.Join(base, "outside"),
		outsideFile: filepath.Join(base, "outside", "file"),
	}
	for _, d := range []string{s.dir, s.outside, filepath.Join(s.outside, "sub")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		s.outsideFile:                           "outside secret\n",
		filepath.Join(s.outside, "sub", "deep"): "deep secret\n",
		filepath.Join(base, "neighbor"):         "neighbor\n",
	}
	for p, c := range files {
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("file", filepath.Join(s.outside, "rel-link")); err != nil {
		t.Fatal(err)
	}
	s.before = snapshot(t, base, s.dir)
	return s
}

// checkOutside fails the test if anything next to the layer dir changed:
// contents, modes, owners, link counts, xattrs, mtimes or the set of entries.
func (s *sandbox) checkOutside(t testing.TB) {
	t.Helper()
	after := snapshot(t, s.base, s.dir)
	if diff := cmp.Diff(s.before, after); diff != "" {
		t.Errorf("outside of the layer directory changed (-before +after):\n%s", diff)
	}
}

// inside returns the host path of rel inside the layer dir.
func (s *sandbox) inside(rel string) string { return filepath.Join(s.dir, rel) }

// checkErr compares err against want: nil means success, errAny any error,
// otherwise errors.Is must hold.
var errAny = errors.New("any error")

func checkErr(t testing.TB, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("Extract: unexpected error: %v", err)
	case want != nil && err == nil:
		t.Fatalf("Extract succeeded, want error %v", want)
	case want != nil && want != errAny && !errors.Is(err, want):
		t.Fatalf("Extract error = %v, want one wrapping %v", err, want)
	}
}

// openFds counts this process's open file descriptors.
func openFds(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
