package store_test

import (
	"bytes"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/image/store"
	"github.com/karman-project/karman/tests/pagecache"
)

// TestBlobsAndLeasesAreOnDisk: a stored blob has reached the disk when
// PutBlob returns, before refs.json can name it; a lease when SyncLeases
// returns.
func TestBlobsAndLeasesAreOnDisk(t *testing.T) {
	root := filepath.Join(t.TempDir(), "images")
	st, err := store.Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	pagecache.RequireDiskBacked(t, root)
	data := bytes.Repeat([]byte("blob"), 5000)
	d, size, err := v1.SHA256(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutBlob(d, size, data); err != nil {
		t.Fatal(err)
	}
	pagecache.RequireSynced(t, st.BlobPath(d))
	if err := st.AddLease("pod-app", d, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := st.SyncLeases("pod-app"); err != nil {
		t.Fatal(err)
	}
	pagecache.RequireSynced(t, filepath.Join(root, "leases", "pod-app.json"))
}
