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
	"testing"
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
