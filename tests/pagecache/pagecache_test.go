package pagecache

import (
	"os"
	"path/filepath"
	"testing"
)

// TestProbe: the probe tells a written file from a synced one.
func TestProbe(t *testing.T) {
	dir := t.TempDir()
	RequireDiskBacked(t, dir)
	path := filepath.Join(dir, "f")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, 8192)); err != nil {
		t.Fatal(err)
	}
	if n := Unsynced(t, path); n == 0 {
		t.Fatal("a file just written has no dirty pages: the probe cannot tell")
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	RequireSynced(t, path)
}
