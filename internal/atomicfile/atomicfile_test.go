package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/karman-project/karman/tests/pagecache"
)

// entries returns the names in dir.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "record.json")
	for i, tc := range []struct {
		data string
		perm fs.FileMode
	}{
		{"first\n", 0o600},
		{"second, longer than the first\n", 0o666}, // exact: the umask does not apply
		{"", 0o640},
	} {
		if err := WriteFile(path, []byte(tc.data), tc.perm); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != tc.data {
			t.Fatalf("write %d: content %q, %v; want %q", i, got, err, tc.data)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != tc.perm {
			t.Fatalf("write %d: mode %v, %v; want %v", i, fi.Mode().Perm(), err, tc.perm)
		}
		if names := entries(t, dir); len(names) != 1 || names[0] != "record.json" {
			t.Fatalf("write %d: directory holds %q, want only record.json", i, names)
		}
	}
}

// TestConcurrentWriters: writers racing on one target each use their own
// temporary file; every write succeeds, the result is one whole write,
// and no temporary file is left.
func TestConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "record.json")
	const writers, rounds = 16, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds)
	for w := range writers {
		wg.Go(func() {
			data := bytes.Repeat([]byte{byte('a' + w)}, 4096*(w+1))
			for range rounds {
				if err := WriteFile(path, data, 0o644); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || len(got)%4096 != 0 || !bytes.Equal(got, bytes.Repeat(got[:1], len(got))) ||
		len(got) != 4096*int(got[0]-'a'+1) {
		t.Fatalf("content is not one whole write: %d bytes starting %q", len(got), got[:min(len(got), 8)])
	}
	if names := entries(t, dir); len(names) != 1 {
		t.Fatalf("directory holds %q, want only record.json", names)
	}
}

func TestUniqueTempNames(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x")
	const n = 64
	files := make([]*File, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			f, err := Create(path, 0o600)
			if err != nil {
				t.Error(err)
				return
			}
			files[i] = f
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, f := range files {
		if f == nil {
			t.FailNow()
		}
		name := f.f.Name()
		if seen[name] {
			t.Fatalf("temporary name %s used twice", name)
		}
		seen[name] = true
		if filepath.Dir(name) != dir || !IsTemp(filepath.Base(name)) {
			t.Fatalf("temporary file %s: want a temporary name in %s", name, dir)
		}
	}
	for _, f := range files {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if names := entries(t, dir); len(names) != 0 {
		t.Fatalf("abandoned writes left %q", names)
	}
}

// TestFailureLeavesNoTemp: whatever fails, the target is unchanged and
// the temporary file is gone.
func TestFailureLeavesNoTemp(t *testing.T) {
	t.Run("rename", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "target")
		// A non-empty directory cannot be renamed over.
		if err := os.MkdirAll(filepath.Join(target, "keep"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := WriteFile(target, []byte("data"), 0o644); err == nil {
			t.Fatal("replacing a non-empty directory succeeded")
		}
		if names := entries(t, dir); len(names) != 1 || names[0] != "target" {
			t.Fatalf("directory holds %q, want only target", names)
		}
		if _, err := os.Stat(filepath.Join(target, "keep")); err != nil {
			t.Fatalf("target changed: %v", err)
		}
	})
	t.Run("write", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "target")
		if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := Create(target, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.f.Close() // the next write fails as on a full disk
		if _, err := f.Write([]byte("new")); err == nil {
			t.Fatal("write to a closed file succeeded")
		}
		if err := f.Commit(); err == nil {
			t.Fatal("commit after a failed write succeeded")
		}
		if got, _ := os.ReadFile(target); string(got) != "old" {
			t.Fatalf("target holds %q, want old", got)
		}
		if names := entries(t, dir); len(names) != 1 {
			t.Fatalf("directory holds %q, want only target", names)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("close after commit: %v", err)
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		err := WriteFile(filepath.Join(t.TempDir(), "no", "such"), nil, 0o644)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("got %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("abandoned", func(t *testing.T) {
		dir := t.TempDir()
		f, err := Create(filepath.Join(dir, "target"), 0o644)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(f, "never committed")
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if names := entries(t, dir); len(names) != 0 {
			t.Fatalf("directory holds %q, want nothing", names)
		}
	})
}

func TestRemove(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x")
	if err := WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := Remove(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("second remove: %v, want fs.ErrNotExist", err)
	}
}

func TestIsTemp(t *testing.T) {
	for name, want := range map[string]bool{
		".record.json.tmp-123": true,
		"record.json":          false,
		"record.json.tmp":      false,
		".hidden":              false,
	} {
		if got := IsTemp(name); got != want {
			t.Errorf("IsTemp(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestWriteFileNoSync(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pid")
	for _, data := range []string{"1\n", "22\n"} {
		if err := WriteFileNoSync(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(path); string(got) != data {
			t.Fatalf("content %q, want %q", got, data)
		}
	}
	if names := entries(t, dir); len(names) != 1 {
		t.Fatalf("directory holds %q, want only pid", names)
	}
}

// TestWriteFileIsOnDisk: when WriteFile returns, the data has left the
// page cache for the disk.
func TestWriteFileIsOnDisk(t *testing.T) {
	dir := t.TempDir()
	pagecache.RequireDiskBacked(t, dir)
	path := filepath.Join(dir, "record.json")
	if err := WriteFile(path, bytes.Repeat([]byte("x"), 20000), 0o600); err != nil {
		t.Fatal(err)
	}
	pagecache.RequireSynced(t, path)
}

// TestSync: files written without fsync are on disk after Sync; missing
// paths are skipped.
func TestSync(t *testing.T) {
	dir := t.TempDir()
	pagecache.RequireDiskBacked(t, dir)
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, p := range []string{a, b} {
		if err := WriteFileNoSync(p, bytes.Repeat([]byte("x"), 9000), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := Sync(a, b, filepath.Join(dir, "missing"), dir); err != nil {
		t.Fatal(err)
	}
	pagecache.RequireSynced(t, a)
	pagecache.RequireSynced(t, b)
}

func TestKeepMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := WriteFile(path, []byte("new"), KeepMode); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("new file: mode %v, want 0600", fi.Mode().Perm())
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("again"), KeepMode); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Fatalf("replaced file: mode %v, want the old 0640", fi.Mode().Perm())
	}
}
