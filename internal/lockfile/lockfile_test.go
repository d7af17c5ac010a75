package lockfile

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestExclusiveExcludesShared(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	ex, err := TryLock(p, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TryLock(p, false); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("shared lock while exclusive held: got %v, want ErrWouldBlock", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := Acquire(ctx, p, false); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire while held: got %v, want deadline exceeded", err)
	}
	ex.Unlock()
	sh1, err := TryLock(p, false)
	if err != nil {
		t.Fatal(err)
	}
	defer sh1.Unlock()
	sh2, err := TryLock(p, false)
	if err != nil {
		t.Fatalf("second shared lock: %v", err)
	}
	defer sh2.Unlock()
	if _, err := TryLock(p, true); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("exclusive while shared held: got %v", err)
	}
}

func TestLockDirectory(t *testing.T) {
	dir := t.TempDir()
	l, err := TryLockDir(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TryLockDir(dir, false); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("directory lock not exclusive: %v", err)
	}
	l.Unlock()
	gone := filepath.Join(dir, "gone")
	if _, err := TryLockDir(gone, false); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("lock of a missing directory: %v", err)
	}
	if _, err := os.Lstat(gone); err == nil {
		t.Fatalf("TryLockDir created %s", gone)
	}
}
