package pagecache

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// Unsynced returns the number of the file's pages that are dirty or under
// writeback: 0 once its data is on disk.
func Unsynced(t testing.TB, path string) uint64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("pagecache: %v", err)
	}
	defer f.Close()
	var st unix.Cachestat_t
	if err := unix.Cachestat(uint(f.Fd()), &unix.CachestatRange{}, &st, 0); err != nil {
		t.Fatalf("pagecache: cachestat %s: %v (needs Linux 6.5 or later)", path, err)
	}
	return st.Dirty + st.Writeback
}

// RequireDiskBacked fails t unless dir is on a file system with a backing
// device whose page cache cachestat reports (not tmpfs or another
// memory-only one, whose pages stay dirty for ever).
func RequireDiskBacked(t testing.TB, dir string) {
	t.Helper()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatalf("pagecache: %v", err)
	}
	switch fs.Type {
	case unix.TMPFS_MAGIC, unix.RAMFS_MAGIC, unix.OVERLAYFS_SUPER_MAGIC:
		t.Fatalf("pagecache: %s is not on a disk file system (type %#x); set TMPDIR to a directory on one (ext4, xfs)", dir, fs.Type)
	}
}

// RequireSynced fails t if path has pages not yet on disk.
func RequireSynced(t testing.TB, path string) {
	t.Helper()
	if n := Unsynced(t, path); n != 0 {
		t.Errorf("%s: %d pages not on disk after the write returned (no fsync)", path, n)
	}
}
