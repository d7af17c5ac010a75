//go:build linux

package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// FuzzExtract feeds arbitrary tar bytes to Extract and checks that nothing
// outside the layer directory changes. Plain `go test` runs the seeds only.
func FuzzExtract(f *testing.F) {
	seeds := [][]ent{
		{dirE("a/", 0o755), regE("a/f", "content", 0o644), symE("a/s", "f"), linkE("a/h", "a/f")},
		{regE("../outside/file", "pwned", 0o644)},
		{symE("evil", "/"), regE("evil/outside/file", "pwned", 0o644)},
		{symE("evil", "../outside"), regE("evil/file", "pwned", 0o644)},
		{symE("evil", "../../../.."), dirE("evil/outside/", 0o700)},
		{symE("link", "../outside/file"), regE("link", "new", 0o644)},
		{linkE("hl", "../outside/file")},
		{symE("sl", "../outside/file"), linkE("hl", "sl")},
		{dirE("d/", 0o755), symE("d/up", "../../outside"), regE("d", "f", 0o644)},
		{regE("a/.wh.b", "", 0o644), regE("a/.wh..wh..opq", "", 0o644), regE(".wh..wh.plnk/x", "", 0o644)},
		{dirE("/", 0o700), regE("/abs", "abs", 0o4755).with(xattr("trusted.overlay.opaque", "y")).with(xattr("user.x", "y"))},
		{devE(tar.TypeFifo, "p", 0, 0, 0o600), devE(tar.TypeChar, "c", 1, 3, 0o666)},
		{regE("x", "y", 0o644).with(xattr("trusted.overlay.redirect", "/outside")).with(xattr("security.selinux", "x"))},
		{dirE("o/", 0o755), regE("o/.wh..wh..opq", "", 0o644).with(xattr("trusted.overlay.opaque", "n"))},
		{regE(strings.Repeat("d/", 60)+"f", "long", 0o644), symE(strings.Repeat("l", 120), strings.Repeat("../", 40))},
		{{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"path": "../outside/g"}}}, regE("a", "b", 0o644)},
	}
	for _, s := range seeds {
		for i := range s {
			if s[i].hdr.Typeflag != tar.TypeXGlobalHeader {
				s[i].hdr.ModTime = fuzzTime // whole seconds: no PAX header, smaller seeds
			}
		}
		f.Add(mkTar(f, s...))
	}
	// The GNU format's long names and links ('L' and 'K' entries).
	gnu := []ent{regE(strings.Repeat("g", 110), "gnu", 0o644), linkE("gl", "../"+strings.Repeat("o", 105))}
	for i := range gnu {
		gnu[i].hdr.ModTime, gnu[i].hdr.Format = fuzzTime, tar.FormatGNU
	}
	f.Add(mkTar(f, gnu...))
	// PAX records that override the header's own name and link name.
	f.Add(paxTar(f, map[string]string{"path": "../outside/file"}, regE("harmless", "pwned", 0o644)))
	f.Add(paxTar(f, map[string]string{"linkpath": "../outside/file"}, linkE("h", "ok")))
	f.Add(paxTar(f, map[string]string{"linkpath": "../../../tmp", "path": "s"}, symE("t", "ok"), regE("s/x", "pwned", 0o644)))
	f.Add([]byte("not a tar at all"))

	f.Fuzz(func(t *testing.T, data []byte) {
		if tooBig(data) {
			t.Skip("entry too large for a fuzz run")
		}
		s := newSandbox(t)
		t.Cleanup(func() { makeRemovable(s.dir) })
		above := watchAbove(t, s.base, tarNames(data))
		_, _ = Extract(context.Background(), bytes.NewReader(data), s.dir, Options{})
		s.checkOutside(t)
		s.checkInside(t)
		above.check(t)
	})
}

// paxTar writes a PAX extended header holding records (which
// archive/tar's writer would not let override the path or link name) before
// the first of entries, then the entries.
func paxTar(t testing.TB, records map[string]string, entries ...ent) []byte {
	t.Helper()
	var body strings.Builder
	for _, k := range slices.Sorted(maps.Keys(records)) {
		rec := " " + k + "=" + records[k] + "\n"
		n := len(rec) + 1 // the length counts its own digits
		for len(strconv.Itoa(n))+len(rec) != n {
			n++
		}
		fmt.Fprintf(&body, "%d%s", n, rec)
	}
	// Written as a regular file, then retyped to 'x' with a new checksum.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "PaxHeaders/0", Size: int64(body.Len()), Mode: 0o644, ModTime: fuzzTime, Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(body.String())); err != nil {
		t.Fatal(err)
	}
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	b[156] = tar.TypeXHeader
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b[:512] {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	for i := range entries {
		entries[i].hdr.ModTime = fuzzTime
	}
	return append(b, mkTar(t, entries...)...)
}

// checkInside fails the test if the layer directory holds something that
// reaches outside it or that an image may not set: a non-directory with a
// link that is not inside the layer (a hardlink to any file elsewhere on
// the filesystem), a mount point, or a trusted.* xattr other than the
// opaque marker of a .wh..wh..opq whiteout.
func (s *sandbox) checkInside(t testing.TB) {
	t.Helper()
	var rootDev uint64
	names := map[[2]uint64]uint64{} // dev, ino -> names seen inside
	nlink := map[[2]uint64]uint64{}
	where := map[[2]uint64]string{}
	err := filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if p == s.dir {
			rootDev = st.Dev
		}
		if st.Dev != rootDev {
			t.Errorf("%s is on another filesystem (device %d, the layer is on %d)", p, st.Dev, rootDev)
		}
		for name, val := range listXattrs(t, p) {
			if strings.HasPrefix(name, "trusted.") && !(name == "trusted.overlay.opaque" && val == "y" && d.IsDir()) {
				t.Errorf("%s has xattr %s=%q, which an image may not set", p, name, val)
			}
		}
		if !d.IsDir() {
			k := [2]uint64{st.Dev, st.Ino}
			names[k]++
			nlink[k] = st.Nlink
			where[k] = p
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking the layer: %v", err)
	}
	for k, n := range names {
		if nlink[k] != n {
			t.Errorf("%s has %d links but only %d are inside the layer: it is linked to a file outside", where[k], nlink[k], n)
		}
	}
}

// aboveWatch notes which names an archive mentions already exist in the
// directories above the sandbox (up to /), which a fuzz run cannot
// snapshot whole: other processes write there. A name that appears in one
// during an extraction escaped even the sandbox.
type aboveWatch struct{ existed map[string]bool }

func watchAbove(t testing.TB, base string, names []string) aboveWatch {
	t.Helper()
	w := aboveWatch{existed: map[string]bool{}}
	for dir := base; ; dir = filepath.Dir(dir) {
		for _, n := range names {
			p := filepath.Join(dir, n)
			_, err := os.Lstat(p)
			w.existed[p] = err == nil
		}
		if dir == "/" {
			break
		}
	}
	return w
}

func (w aboveWatch) check(t testing.TB) {
	t.Helper()
	for p, existed := range w.existed {
		if _, err := os.Lstat(p); err == nil && !existed {
			t.Errorf("%s appeared outside the layer directory during the extraction", p)
		}
	}
}

// tarNames returns the path components of the names and link names of the
// archive's entries (as far as it parses), at most 256 of them.
func tarNames(data []byte) []string {
	seen := map[string]bool{}
	var out []string
	tr := tar.NewReader(bytes.NewReader(data))
	for len(out) < 256 {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		for _, p := range []string{hdr.Name, hdr.Linkname} {
			for c := range strings.SplitSeq(p, "/") {
				if c != "" && c != "." && c != ".." && !seen[c] && len(out) < 256 {
					seen[c] = true
					out = append(out, c)
				}
			}
		}
	}
	return out
}

var fuzzTime = time.Unix(1700000000, 0)

// FuzzExtractScript is a structure-aware companion of FuzzExtract: the input
// is a small script, one entry per line ("KIND NAME [TARGET]", KIND one of
// f d s h p), turned into a valid tar. "$OUT" expands to the absolute path of
// the outside directory so that absolute symlinks aim at something watched.
func FuzzExtractScript(f *testing.F) {
	for _, seed := range []string{
		"d a\nf a/f\ns a/s f\nh a/h a/f",
		"s evil /\nf evil$OUT/pwned",
		"s evil $OUT\nf evil/pwned",
		"s evil ../outside\nd outside\nf evil/file",
		"s evil ../../..\nd evil/outside",
		"s link $OUT/file\nf link",
		"h hl ../outside/file",
		"h hl $OUT/file",
		"s sl $OUT/file\nh hl sl",
		"d d\ns d/up ../../outside\nf d",
		"s a b\ns b c/..\nd c\ns c/up ../../..\nf a/c/up/outside/file",
		"f a/.wh.b\nf a/.wh..wh..opq\np a/fifo",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, script string) {
		s := newSandbox(t)
		t.Cleanup(func() { makeRemovable(s.dir) })
		data, ok := scriptTar(strings.ReplaceAll(script, "$OUT", s.outside))
		if !ok {
			t.Skip("not a valid script")
		}
		above := watchAbove(t, s.base, tarNames(data))
		_, _ = Extract(context.Background(), bytes.NewReader(data), s.dir, Options{})
		s.checkOutside(t)
		s.checkInside(t)
		above.check(t)
	})
}

// scriptTar builds the tar described by a FuzzExtractScript script.
func scriptTar(script string) ([]byte, bool) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	lines := strings.Split(script, "\n")
	if len(lines) > 32 {
		return nil, false
	}
	for _, line := range lines {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		hdr := &tar.Header{Name: fields[1], Mode: 0o755, ModTime: fuzzTime}
		if len(fields) > 2 {
			hdr.Linkname = fields[2]
		}
		body := ""
		switch fields[0] {
		case "f":
			hdr.Typeflag, body = tar.TypeReg, "pwned"
		case "d":
			hdr.Typeflag = tar.TypeDir
		case "s":
			hdr.Typeflag = tar.TypeSymlink
		case "h":
			hdr.Typeflag = tar.TypeLink
		case "p":
			hdr.Typeflag = tar.TypeFifo
		default:
			return nil, false
		}
		hdr.Size = int64(len(body))
		if tw.WriteHeader(hdr) != nil {
			return nil, false
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			return nil, false
		}
	}
	if tw.Close() != nil {
		return nil, false
	}
	return buf.Bytes(), true
}

// tooBig reports archives with entries that would write a lot of data (for
// example sparse files whose holes are written out).
func tooBig(data []byte) bool {
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err != nil {
			return false
		}
		if hdr.Size > 1<<20 {
			return true
		}
	}
}

// makeRemovable gives the owner rwx on all directories so that t.TempDir's
// cleanup works without root after a layer created 0000 directories.
func makeRemovable(dir string) {
	if os.Geteuid() == 0 {
		return
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if d != nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
}

// BenchmarkExtract extracts an in-memory ~64 MB layer of 300 files.
func BenchmarkExtract(b *testing.B) {
	const files, fileSize = 300, 64 << 20 / 300
	content := make([]byte, fileSize)
	for i := range content {
		content[i] = byte(i * 7)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := range files {
		if i%20 == 0 {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: fmt.Sprintf("d%02d/", i/20), Mode: 0o755}); err != nil {
				b.Fatal(err)
			}
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("d%02d/f%03d", i/20, i), Mode: 0o644, Size: fileSize}
		if err := tw.WriteHeader(hdr); err != nil {
			b.Fatal(err)
		}
		if _, err := tw.Write(content); err != nil {
			b.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	base := b.TempDir()

	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		dir := filepath.Join(base, fmt.Sprint(i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		r := bytes.NewReader(data)
		b.StartTimer()
		stats, err := Extract(context.Background(), io.Reader(r), dir, Options{})
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if stats.Files != files {
			b.Fatalf("extracted %d files, want %d", stats.Files, files)
		}
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
