package store

import (
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
)

// flakyWriter fails its second write with ENOSPC and accepts the others,
// as a disk that is full for a moment does.
type flakyWriter struct{ n int }

func (w *flakyWriter) Write(p []byte) (int, error) {
	w.n++
	if w.n == 2 {
		return 0, syscall.ENOSPC
	}
	return len(p), nil
}

// TestStickyWriter: once a write of the blob has failed, every later one
// fails too, so that reading the rest of the download reports the error
// instead of a digest that misses what was never written.
func TestStickyWriter(t *testing.T) {
	sw := &stickyWriter{w: &flakyWriter{}}
	tee := io.TeeReader(strings.NewReader(strings.Repeat("x", 64<<10)), sw)
	buf := make([]byte, 4096)
	if _, err := tee.Read(buf); err != nil {
		t.Fatal(err)
	}
	if _, err := tee.Read(buf); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("second read: %v, want ENOSPC", err)
	}
	// The extractor saw the error and stopped; the rest is drained.
	if _, err := io.Copy(io.Discard, tee); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("draining after the failed write: %v, want ENOSPC", err)
	}
	if !errors.Is(sw.err, syscall.ENOSPC) {
		t.Errorf("kept error: %v", sw.err)
	}
}
