// Package leakcheck proves that a test left the host as it found it. It
// snapshots, before and after, what karman can leave behind, and fails the
// test on any difference:
//
//   - mounts at or under the data directory and the network namespace
//     directory (the netns bind mounts and the directory's own);
//   - the files in the network namespace directory;
//   - links: the test's bridge, and every link named after a tracked pod
//     (its host veth, "kv" and 12 hex digits of the UUID);
//   - nftables: the bridge's table, and every rule of a karman table
//     that names a tracked pod;
//   - cgroups: a tracked pod's directory under karman's cgroup parent in
//     every hierarchy;
//   - pod directories under the data directory.
//
// The machine is shared with other tests and people, so the snapshot is
// scoped to what the test names (Scope) and the pods it tracks (Track,
// TrackPods), never the whole host.
//
//	c := leakcheck.Start(t, leakcheck.Scope{DataDir: dir, NetNSDir: ns, Bridge: br})
//	... // run pods
//	c.TrackPods()      // remember the pods now in the data directory
//	... // remove them
//	c.Check()          // fails t on anything left
package leakcheck
