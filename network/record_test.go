package network

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/karman-project/karman/tests/pagecache"
)

// TestRecordIsOnDisk: the record of a pod with a CNI network, which
// Teardown needs after a reboot, has reached the disk when save returns,
// and saving leaves nothing beside it.
func TestRecordIsOnDisk(t *testing.T) {
	dir := t.TempDir()
	pagecache.RequireDiskBacked(t, dir)
	if err := os.Mkdir(filepath.Join(dir, "net"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := (&Record{UUID: "u", NetNS: "/run/netns/x", Networks: []*netRec{{Type: "cni"}}}).save(dir); err != nil {
		t.Fatal(err)
	}
	pagecache.RequireSynced(t, filepath.Join(dir, RecordFile))
	if ents, _ := os.ReadDir(filepath.Join(dir, "net")); len(ents) != 1 {
		t.Fatalf("net/ holds %d entries, want only the record", len(ents))
	}
}
