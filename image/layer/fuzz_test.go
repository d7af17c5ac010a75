//go:build linux

package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	}
	for _, s := range seeds {
		for i := range s {
			s[i].hdr.ModTime = fuzzTime // whole seconds: no PAX header, smaller seeds
		}
		f.Add(mkTar(f, s...))
	}
	f.Add([]byte("not a tar at all"))

	f.Fuzz(func(t *testing.T, data []byte) {
		if tooBig(data) {
			t.Skip("entry too large for a fuzz run")
		}
		s := newSandbox(t)
		t.Cleanup(func() { makeRemovable(s.dir) })
		_, _ = Extract(context.Background(), bytes.NewReader(data), s.dir, Options{})
		s.checkOutside(t)
	})
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
		_, _ = Extract(context.Background(), bytes.NewReader(data), s.dir, Options{})
		s.checkOutside(t)
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
