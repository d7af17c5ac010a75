// Package network owns pod networks: none, host, the built-in default
// network and CNI networks, port forwarding, DNS and /etc/hosts.
//
// It runs in stage0 only (the karman process, before stage1 starts, and
// gc): stage1 joins the namespace that Setup made and imports nothing of
// this package.
//
// # Lifecycle
//
//	atts, _ := network.ParseNet("default,mynet:IP=10.1.2.3")  // --net
//	o := network.Options{UUID: uuid, PodDir: dir, Networks: atts, Ports: ports, ConfigDir: etc}
//	network.Check(o)               // before the pod is prepared: configs, plugins, host ports
//	rec, err := network.Setup(ctx, o)
//	// rec.NetNS goes to stage1 (Pod.NetNS); Hosts and ResolvConf give
//	// the pod's /etc files; rec.Statuses() what status shows.
//	...                            // the pod runs and ends
//	network.Teardown(ctx, dir, log) // idempotent: on exit, by gc, by rm
//	// a record that does not load (ErrRecordDamaged):
//	network.TeardownByUUID(ctx, network.Options{UUID: uuid, PodDir: dir, ConfigDir: etc})
//	network.Prune(etc)              // gc --all: bridge, table, netns dir mount, when unused
//
// Setup records every resource in PODDIR/net/record.json before it makes
// it (the namespace path, the veth name, the reservation directory, the
// nftables table, the CNI conflist, plugin directories and arguments), so
// that Teardown can undo it from the record alone whatever happened: a
// failure half-way (Setup calls Teardown itself), a SIGKILLed supervisor,
// a crash of karman at any point.
//
// # Parts
//
//   - netns.go: persistent namespaces (unshare on a locked thread and a
//     bind mount of the nsfs file, as `ip netns add`).
//   - bridge.go, ipam.go, nat.go: the default network, in-process over
//     netlink (vishvananda/netlink) and nftables (google/nftables): bridge,
//     veth, a file-locked address allocator keyed by pod UUID, masquerade
//     (once per network) and port forwards (per pod, tagged with its UUID).
//   - cni.go: CNI networks through libcni and the real plugins.
//   - dns.go: /etc/resolv.conf and /etc/hosts.
//   - dial.go: connections to a port on a pod's loopback, made in the
//     pod's namespace (port forwarding for the CRI).
//   - config.go: <config-dir>/network.json.
//   - teardown.go: undoing a pod without its record, and Prune.
//
// docs/networking.md describes the behaviour, the rules and the costs.
package network
