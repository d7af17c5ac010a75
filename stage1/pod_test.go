package stage1

import (
	"path/filepath"
	"testing"

	"github.com/karman-project/karman/tests/pagecache"
)

// TestSavePodIsOnDisk: pod.json, the pod's definition, has reached the
// disk when SavePod returns.
func TestSavePodIsOnDisk(t *testing.T) {
	dir := t.TempDir()
	pagecache.RequireDiskBacked(t, dir)
	p := &Pod{UUID: "u", Apps: []App{{Name: "a"}}}
	if err := SavePod(dir, p); err != nil {
		t.Fatal(err)
	}
	pagecache.RequireSynced(t, filepath.Join(dir, PodFile))
	if got, err := LoadPod(dir); err != nil || got.UUID != "u" {
		t.Fatalf("LoadPod: %+v, %v", got, err)
	}
}
