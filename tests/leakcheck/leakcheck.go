package leakcheck

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/karman-project/karman/internal/nldump"
	"github.com/karman-project/karman/isolators/cgroups"
)

// Scope names what the check looks at. Empty fields are not looked at.
type Scope struct {
	DataDir  string // karman --dir
	NetNSDir string // the network configuration's netnsDir
	Bridge   string // the default network's bridge
}

// podStates are the state directories of a data directory's pods.
var podStates = []string{"embryo", "prepared", "run", "exited-garbage", "garbage"}

// Checker holds the snapshot taken by Start.
type Checker struct {
	t      testing.TB
	scope  Scope
	mu     sync.Mutex
	uuids  map[string]bool
	before Snapshot
}

// Snapshot is what the check compares; each entry is one object, named
// so that a difference reads as what was left.
type Snapshot struct {
	Mounts  []string
	NetNS   []string
	Links   []string
	NFT     []string
	Cgroups []string
	Pods    []string
}

// Start takes the first snapshot.
func Start(t testing.TB, s Scope) *Checker {
	t.Helper()
	c := &Checker{t: t, scope: s, uuids: map[string]bool{}}
	c.before = c.Snapshot()
	return c
}

// Track adds pods whose links, rules and cgroups the check looks for.
func (c *Checker) Track(uuids ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, u := range uuids {
		c.uuids[u] = true
	}
}

// TrackPods tracks every pod now in the data directory.
func (c *Checker) TrackPods() {
	c.Track(pods(c.scope.DataDir)...)
}

func (c *Checker) tracked() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.uuids))
	for u := range c.uuids {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

// Check fails the test if anything differs from the first snapshot. The
// kernel destroys a namespace, and the veths in it, asynchronously: links
// get a few seconds to go.
func (c *Checker) Check() {
	c.t.Helper()
	var after Snapshot
	for range 100 {
		if after = c.Snapshot(); cmp.Equal(c.before, after) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Errorf("the host is not as the test found it (-before +after):\n%s", cmp.Diff(c.before, after))
}

// Snapshot reads the host now.
func (c *Checker) Snapshot() Snapshot {
	c.t.Helper()
	s := c.scope
	uuids := c.tracked()
	var snap Snapshot
	var roots []string
	for _, d := range []string{s.DataDir, s.NetNSDir} {
		if d != "" {
			roots = append(roots, filepath.Clean(d))
		}
	}
	snap.Mounts = mountsUnder(c.t, roots)
	if s.NetNSDir != "" {
		ents, _ := os.ReadDir(s.NetNSDir)
		for _, e := range ents {
			snap.NetNS = append(snap.NetNS, e.Name())
		}
	}
	snap.Links = links(c.t, s.Bridge, uuids)
	snap.NFT = nft(c.t, s.Bridge, uuids)
	snap.Cgroups = cgroupDirs(c.t, uuids)
	if s.DataDir != "" {
		for _, sd := range podStates {
			ents, _ := os.ReadDir(filepath.Join(s.DataDir, "pods", sd))
			for _, e := range ents {
				snap.Pods = append(snap.Pods, sd+"/"+e.Name())
			}
		}
	}
	return snap
}

// pods lists the UUIDs of the pods in a data directory.
func pods(dataDir string) []string {
	if dataDir == "" {
		return nil
	}
	var out []string
	for _, sd := range podStates {
		ents, _ := os.ReadDir(filepath.Join(dataDir, "pods", sd))
		for _, e := range ents {
			out = append(out, e.Name())
		}
	}
	return out
}

func mountsUnder(t testing.TB, roots []string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatalf("leakcheck: %v", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := fields[4]
		for _, r := range roots {
			if mp == r || strings.HasPrefix(mp, r+"/") {
				out = append(out, mp)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// vethName is the host end of a pod's veth (network.hostVethName).
func vethName(uuid string) string {
	hex := strings.ReplaceAll(uuid, "-", "")
	return "kv" + hex[:min(12, len(hex))]
}

func links(t testing.TB, bridge string, uuids []string) []string {
	t.Helper()
	ls, err := nldump.Retry(netlink.LinkList)
	if err != nil {
		t.Fatalf("leakcheck: links: %v", err)
	}
	want := map[string]bool{}
	if bridge != "" {
		want[bridge] = true
	}
	for _, u := range uuids {
		want[vethName(u)] = true
	}
	var out []string
	for _, l := range ls {
		if want[l.Attrs().Name] {
			out = append(out, l.Type()+" "+l.Attrs().Name)
		}
	}
	slices.Sort(out)
	return out
}

func nft(t testing.TB, bridge string, uuids []string) []string {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatalf("leakcheck: nftables: %v", err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatalf("leakcheck: nftables: %v", err)
	}
	chains, _ := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	var out []string
	for _, tbl := range tables {
		if bridge != "" && tbl.Name == "karman-"+bridge {
			out = append(out, "table "+tbl.Name)
		}
		if !strings.HasPrefix(tbl.Name, "karman-") || len(uuids) == 0 {
			continue
		}
		for _, ch := range chains {
			if ch.Table == nil || ch.Table.Name != tbl.Name {
				continue
			}
			rules, _ := c.GetRules(tbl, ch)
			for _, r := range rules {
				for _, u := range uuids {
					if strings.Contains(string(r.UserData), "pod="+u+" ") {
						out = append(out, "rule "+tbl.Name+"/"+ch.Name+": "+string(r.UserData))
					}
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// cgroupDirs lists the tracked pods' cgroup directories under karman's
// parent, in every v1 hierarchy and in the unified one.
func cgroupDirs(t testing.TB, uuids []string) []string {
	t.Helper()
	if len(uuids) == 0 {
		return nil
	}
	parents := []string{"/karman"}
	if p, err := cgroups.Parent(); err == nil && p != "/karman" {
		parents = append(parents, p)
	}
	var out []string
	for _, p := range parents {
		for _, u := range uuids {
			for _, pattern := range []string{"/sys/fs/cgroup/*" + p + "/" + u, "/sys/fs/cgroup" + p + "/" + u} {
				dirs, _ := filepath.Glob(pattern)
				out = append(out, dirs...)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
