package tests

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/karman-project/karman/stage1/poddir"
	"github.com/karman-project/karman/tests/pagecache"
)

// TestPreparedPodIsOnDisk: a prepared pod, which run-prepared may start
// after a reboot, is on disk when `karman prepare` returns: its pod.json
// and its image lease.
func TestPreparedPodIsOnDisk(t *testing.T) {
	e := newPodEnv(t)
	pagecache.RequireDiskBacked(t, e.dir)
	uuid := strings.TrimSpace(mustSucceed(t, karman(t, e.dir, "prepare", e.image, "--exec", "/bin/true")).Stdout)
	pagecache.RequireSynced(t, filepath.Join(e.dir, "pods", "prepared", uuid, poddir.PodFile))
	leases, _ := filepath.Glob(filepath.Join(e.dir, "images", "leases", "pod-"+uuid+"-*.json"))
	if len(leases) != 1 {
		t.Fatalf("leases of the prepared pod: %v, want one", leases)
	}
	pagecache.RequireSynced(t, leases[0])
	mustSucceed(t, karman(t, e.dir, "rm", uuid))
}
