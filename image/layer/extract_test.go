//go:build linux

package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

const anyMtime = -1 // node.Mtime wildcard for implicitly created directories

// compareTree diffs the layer dir against want. Without root, ownership is
// not compared (chown is skipped) and anyMtime entries are not compared.
func compareTree(t *testing.T, dir string, want map[string]node) {
	t.Helper()
	got := snapshot(t, dir, "")
	for p, n := range got {
		w, ok := want[p]
		if !ok {
			continue
		}
		if w.Mtime == anyMtime {
			n.Mtime = anyMtime
		}
		if os.Geteuid() != 0 {
			n.Uid, n.Gid = w.Uid, w.Gid
		}
		got[p] = n
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("layer tree mismatch (-want +got):\n%s", diff)
	}
}

func TestExtractHappyPath(t *testing.T) {
	tRoot := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	tFile := time.Date(2021, 6, 7, 8, 9, 10, 111222333, time.UTC)
	tLink := time.Date(2019, 1, 1, 0, 0, 1, 500, time.UTC)
	tDir := time.Date(2018, 2, 3, 4, 5, 6, 7, time.UTC)
	tAtime := time.Date(2022, 2, 2, 2, 2, 2, 2, time.UTC)
	owned := func(uid, gid int) func(*tar.Header) {
		return func(h *tar.Header) { h.Uid, h.Gid = uid, gid }
	}
	mtime := func(tm time.Time) func(*tar.Header) {
		return func(h *tar.Header) { h.ModTime = tm }
	}
	data := mkTar(t,
		dirE("./", 0o755).with(mtime(tRoot)),
		dirE("bin/", 0o755),
		regE("bin/sh", "#!/bin/sh\n", 0o755),
		regE("usr/bin/passwd", "suid binary", 0o4755),
		dirE("etc/", 0o755),
		regE("etc/hostname", "karman\n", 0o644).with(owned(1000, 1001)).with(mtime(tFile)).
			with(func(h *tar.Header) { h.AccessTime = tAtime }),
		symE("etc/link", "hostname").with(owned(1000, 1001)).with(mtime(tLink)),
		symE("etc/abs", "/etc/hostname"),
		symE("etc/dangling", "../../../nowhere"),
		linkE("etc/hard", "etc/hostname"),
		regE("data/xattr", "x", 0o640).with(xattr("user.test", "hello")).with(xattr("user.bin", "\x00\x01")),
		dirE("tmp/", 0o1777),
		dirE("srv/", 0o2755).with(mtime(tDir)).with(owned(0, 50)),
		regE("srv/a", "a", 0o600),
		dirE("srv/sub/", 0o700),
		regE("srv/sub/b", "", 0o400),
		devE(tar.TypeFifo, "run/fifo", 0, 0, 0o620),
		regE("opt/sgid", "g", 0o2711).with(owned(0, 42)),
	)
	s := newSandbox(t)
	stats, err := extractBytes(t, data, s.dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.checkOutside(t)

	wantStats := Stats{Files: 7, Dirs: 6, Symlinks: 3, Hardlinks: 1, Devices: 1,
		Bytes: int64(len("#!/bin/sh\n") + len("suid binary") + len("karman\n") + 1 + 1 + 1)}
	if diff := cmp.Diff(wantStats, stats); diff != "" {
		t.Errorf("Stats mismatch (-want +got):\n%s", diff)
	}

	t0 := baseTime.UnixNano()
	dir := func(perm fs.FileMode, mt int64) node { return node{Mode: fs.ModeDir | perm, Mtime: mt} }
	file := func(perm fs.FileMode, content string) node {
		return node{Mode: perm, Content: content, Nlink: 1, Mtime: t0}
	}
	link := func(target string) node {
		return node{Mode: fs.ModeSymlink | 0o777, Target: target, Nlink: 1, Mtime: t0}
	}
	hostname := node{Mode: 0o644, Content: "karman\n", Nlink: 2, Uid: 1000, Gid: 1001, Mtime: tFile.UnixNano()}
	want := map[string]node{
		".":              dir(0o755, tRoot.UnixNano()),
		"bin":            dir(0o755, t0),
		"bin/sh":         file(0o755, "#!/bin/sh\n"),
		"usr":            dir(0o755, anyMtime),
		"usr/bin":        dir(0o755, anyMtime),
		"usr/bin/passwd": file(0o755|fs.ModeSetuid, "suid binary"),
		"etc":            dir(0o755, t0),
		"etc/hostname":   hostname,
		"etc/hard":       hostname,
		"etc/link":       {Mode: fs.ModeSymlink | 0o777, Target: "hostname", Nlink: 1, Uid: 1000, Gid: 1001, Mtime: tLink.UnixNano()},
		"etc/abs":        link("/etc/hostname"),
		"etc/dangling":   link("../../../nowhere"),
		"data":           dir(0o755, anyMtime),
		"data/xattr":     {Mode: 0o640, Content: "x", Nlink: 1, Mtime: t0, Xattrs: map[string]string{"user.test": "hello", "user.bin": "\x00\x01"}},
		"tmp":            dir(0o777|fs.ModeSticky, t0),
		"srv":            {Mode: fs.ModeDir | fs.ModeSetgid | 0o755, Gid: 50, Mtime: tDir.UnixNano()},
		"srv/a":          file(0o600, "a"),
		"srv/sub":        dir(0o700, t0),
		"srv/sub/b":      file(0o400, ""),
		"run":            dir(0o755, anyMtime),
		"run/fifo":       {Mode: fs.ModeNamedPipe | 0o620, Nlink: 1, Mtime: t0},
		"opt":            dir(0o755, anyMtime),
		"opt/sgid":       {Mode: fs.ModeSetgid | 0o711, Content: "g", Nlink: 1, Gid: 42, Mtime: t0},
	}
	// Before compareTree, which reads the file and so updates its atime.
	var st unix.Stat_t
	if err := unix.Lstat(s.inside("etc/hostname"), &st); err != nil {
		t.Fatal(err)
	}
	if got := st.Atim.Nano(); got != tAtime.UnixNano() {
		t.Errorf("etc/hostname atime = %v, want %v", time.Unix(0, got).UTC(), tAtime)
	}
	compareTree(t, s.dir, want)
}

func TestExtractDuplicates(t *testing.T) {
	t2 := time.Date(2001, 1, 1, 1, 1, 1, 0, time.UTC)
	tests := []struct {
		name    string
		entries []ent
		want    map[string]node // subset of the tree
		gone    []string
	}{{
		name:    "file then file",
		entries: []ent{regE("f", "one", 0o644), regE("f", "two", 0o600)},
		want:    map[string]node{"f": {Mode: 0o600, Content: "two", Nlink: 1}},
	}, {
		name: "dir tree then file",
		entries: []ent{dirE("d/", 0o755), regE("d/x", "x", 0o644), dirE("d/sub/", 0o755),
			regE("d/sub/y", "y", 0o644), regE("d", "file", 0o644), regE("after", "a", 0o644)},
		want: map[string]node{"d": {Mode: 0o644, Content: "file", Nlink: 1}, "after": {Mode: 0o644, Content: "a", Nlink: 1}},
		gone: []string{"d/x", "d/sub"},
	}, {
		name:    "file then dir",
		entries: []ent{regE("f", "x", 0o644), dirE("f/", 0o700), regE("f/x", "x", 0o644)},
		want:    map[string]node{"f": {Mode: fs.ModeDir | 0o700}, "f/x": {Mode: 0o644, Content: "x", Nlink: 1}},
	}, {
		name: "dir then dir updates metadata and keeps children",
		entries: []ent{dirE("d/", 0o755).with(xattr("user.a", "1")), regE("d/x", "x", 0o644),
			dirE("d/", 0o711).with(func(h *tar.Header) { h.ModTime = t2 })},
		want: map[string]node{"d": {Mode: fs.ModeDir | 0o711, Xattrs: map[string]string{"user.a": "1"}, Mtime: t2.UnixNano()},
			"d/x": {Mode: 0o644, Content: "x", Nlink: 1}},
	}, {
		name:    "hardlink then file breaks the link",
		entries: []ent{regE("f", "f", 0o644), linkE("h", "f"), regE("h", "new", 0o644)},
		want:    map[string]node{"f": {Mode: 0o644, Content: "f", Nlink: 1}, "h": {Mode: 0o644, Content: "new", Nlink: 1}},
	}, {
		name:    "symlink then dir",
		entries: []ent{symE("d", "elsewhere"), dirE("d/", 0o750), regE("d/x", "x", 0o644)},
		want:    map[string]node{"d": {Mode: fs.ModeDir | 0o750}, "d/x": {Mode: 0o644, Content: "x", Nlink: 1}},
	}, {
		name: "parent cache survives replacement",
		entries: []ent{dirE("a/", 0o755), dirE("a/b/", 0o755), regE("a/b/x", "x", 0o644), symE("a", "c"),
			dirE("c/", 0o755), dirE("c/b/", 0o755), regE("a/b/y", "y", 0o644)},
		want: map[string]node{"c/b/y": {Mode: 0o644, Content: "y", Nlink: 1}},
		gone: []string{"c/b/x"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSandbox(t)
			if _, err := extractBytes(t, mkTar(t, tc.entries...), s.dir, Options{}); err != nil {
				t.Fatal(err)
			}
			s.checkOutside(t)
			got := snapshot(t, s.dir, "")
			sub := map[string]node{}
			for p, w := range tc.want {
				n := got[p]
				n.Uid, n.Gid = 0, 0
				if w.Mtime == 0 {
					n.Mtime = 0
				}
				sub[p] = n
			}
			if diff := cmp.Diff(tc.want, sub); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
			for _, p := range tc.gone {
				if _, ok := got[p]; ok {
					t.Errorf("%s still exists", p)
				}
			}
		})
	}
}

func TestExtractDevices(t *testing.T) {
	requireRoot(t)
	s := newSandbox(t)
	data := mkTar(t,
		devE(tar.TypeChar, "dev/null", 1, 3, 0o666).with(func(h *tar.Header) { h.Uid, h.Gid = 5, 6 }),
		devE(tar.TypeBlock, "dev/loop0", 7, 0, 0o660),
		devE(tar.TypeChar, "dev/big", 511, 1048575, 0o600),
		devE(tar.TypeFifo, "dev/fifo", 0, 0, 0o4644),
	)
	stats, err := extractBytes(t, data, s.dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Devices != 4 {
		t.Errorf("Stats.Devices = %d, want 4", stats.Devices)
	}
	s.checkOutside(t)
	got := snapshot(t, s.inside("dev"), "")
	delete(got, ".")
	want := map[string]node{
		"null":  {Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666, Nlink: 1, Uid: 5, Gid: 6, Rdev: unix.Mkdev(1, 3), Mtime: baseTime.UnixNano()},
		"loop0": {Mode: fs.ModeDevice | 0o660, Nlink: 1, Rdev: unix.Mkdev(7, 0), Mtime: baseTime.UnixNano()},
		"big":   {Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, Nlink: 1, Rdev: unix.Mkdev(511, 1048575), Mtime: baseTime.UnixNano()},
		"fifo":  {Mode: fs.ModeNamedPipe | fs.ModeSetuid | 0o644, Nlink: 1, Mtime: baseTime.UnixNano()},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("devices mismatch (-want +got):\n%s", diff)
	}
}

// Requirement 8: only user.* and security.capability survive; the rest is
// dropped with a debug record.
func TestExtractXattrFilter(t *testing.T) {
	requireRoot(t)
	// A file capability (VFS_CAP_REVISION_2, cap_net_raw permitted+effective).
	capNetRaw := string([]byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	hostile := func(h *tar.Header) {
		for _, x := range []string{"trusted.overlay.opaque", "trusted.overlay.redirect", "trusted.overlay.origin",
			"trusted.evil", "security.selinux", "system.posix_acl_access"} {
			xattr(x, "y")(h)
		}
		xattr("user.keep", "kept")(h)
		h.PAXRecords["LIBARCHIVE.xattr.trusted.overlay.opaque"] = "eQ=="
	}
	data := mkTar(t,
		dirE("d/", 0o755).with(hostile),
		regE("d/ping", "ping", 0o755).with(hostile).with(xattr("security.capability", capNetRaw)),
		symE("d/link", "ping").with(hostile),
	)
	var logBuf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := newSandbox(t)
	if _, err := extractBytes(t, data, s.dir, Options{Logger: logger}); err != nil {
		t.Fatal(err)
	}
	s.checkOutside(t)
	got := map[string]map[string]string{}
	for _, p := range []string{"d", "d/ping", "d/link"} {
		got[p] = listXattrs(t, s.inside(p))
	}
	want := map[string]map[string]string{
		"d":      {"user.keep": "kept"},
		"d/ping": {"user.keep": "kept", "security.capability": capNetRaw},
		"d/link": nil, // user.* is not allowed on symlinks: dropped
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("xattrs mismatch (-want +got):\n%s", diff)
	}
	for _, x := range []string{"trusted.overlay.redirect", "security.selinux", "system.posix_acl_access", "LIBARCHIVE.xattr"} {
		if !strings.Contains(logBuf.String(), x) {
			t.Errorf("no debug record about dropped %s; log:\n%s", x, logBuf.String())
		}
	}
}

func TestExtractUnsupportedTypes(t *testing.T) {
	for _, typ := range []byte{tar.TypeCont, 'V', 'D', 'Z'} {
		t.Run(string(typ), func(t *testing.T) {
			s := newSandbox(t)
			data := mkTar(t, ent{hdr: tar.Header{Typeflag: typ, Name: "x", Mode: 0o644}})
			_, err := extractBytes(t, data, s.dir, Options{})
			checkErr(t, err, ErrUnsupported)
			if !strings.Contains(err.Error(), `layer entry "x": entry type '`+string(typ)+`'`) {
				t.Errorf("error %q does not name the entry and type", err)
			}
			s.checkOutside(t)
		})
	}
}

func TestExtractGlobalHeaderIgnored(t *testing.T) {
	s := newSandbox(t)
	data := mkTar(t, ent{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header",
		PAXRecords: map[string]string{"comment": "hi"}}}, regE("f", "f", 0o644))
	if !bytes.Contains(data, []byte("comment=hi")) {
		t.Fatal("test tar has no global header")
	}
	if _, err := extractBytes(t, data, s.dir, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.inside("pax_global_header")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("global header extracted as a file: %v", err)
	}
}

// cancelReader cancels ctx once more than after bytes were read.
type cancelReader struct {
	r      io.Reader
	n      int
	after  int
	cancel context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	if c.n > c.after {
		c.cancel()
	}
	n, err := c.r.Read(p[:min(len(p), 512)])
	c.n += n
	return n, err
}

func TestExtractContextCanceled(t *testing.T) {
	var entries []ent
	for i := range 50 {
		entries = append(entries, regE(strings.Repeat("f", i+1), "data", 0o644))
	}
	data := mkTar(t, entries...)

	s := newSandbox(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Extract(ctx, bytes.NewReader(data), s.dir, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Extract with canceled ctx: %v, want context.Canceled", err)
	}
	if ents, _ := os.ReadDir(s.dir); len(ents) != 0 {
		t.Errorf("canceled extraction wrote %d entries", len(ents))
	}

	s = newSandbox(t)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	stats, err := Extract(ctx, &cancelReader{r: bytes.NewReader(data), after: 4096, cancel: cancel}, s.dir, Options{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Extract canceled mid-stream: %v, want context.Canceled", err)
	}
	if stats.Files == 0 || stats.Files >= 50 {
		t.Errorf("Stats.Files = %d, want a partial extraction", stats.Files)
	}
}

func TestExtractMissingDir(t *testing.T) {
	_, err := extractBytes(t, mkTar(t, regE("f", "f", 0o644)), t.TempDir()+"/missing", Options{})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Extract into a missing dir: %v, want ErrNotExist", err)
	}
}

func TestExtractNoFdLeak(t *testing.T) {
	layers := [][]byte{
		mkTar(t, dirE("a/", 0o755), regE("a/f", "f", 0o644), dirE("a/b/", 0o755), regE("a/b/g", "g", 0o644),
			regE("c/d/e", "e", 0o644), linkE("c/h", "a/f"), symE("s", "a"), regE("s/x", "x", 0o644), regE("a", "a", 0o644)),
		mkTar(t, regE("../x", "x", 0o644)),
		mkTar(t, regE("a/b", "x", 0o644), linkE("h", "../x")),
		mkTar(t, dirE("d/", 0o755), linkE("d/h", "d")),
		mkTar(t, symE("l", "m"), symE("m", "l"), regE("l/x", "x", 0o644)),
		mkTar(t, regE("f", "f", 0o644), ent{hdr: tar.Header{Typeflag: tar.TypeCont, Name: "y"}}),
		mkTar(t, symE("evil", "/nope"), regE("evil/x", "x", 0o644)),
	}
	extractAll := func() {
		for _, data := range layers {
			_, _ = extractBytes(t, data, t.TempDir(), Options{})
		}
	}
	extractAll() // warm up lazily opened runtime descriptors
	before := openFds(t)
	extractAll()
	if after := openFds(t); after != before {
		t.Errorf("open fds: %d before, %d after extraction", before, after)
	}
}
