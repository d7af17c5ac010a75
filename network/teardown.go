package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/internal/nldump"
)

// TeardownByUUID undoes a pod's networks without its record, for a pod
// whose record Load reports damaged (ErrRecordDamaged). What karman makes
// for a pod is named after its UUID or kept in its directory, so the
// record is not needed to find it:
//
//   - CNI networks: libcni's cache in PODDIR/net/cni keeps, for every
//     attachment not yet deleted, the conflist and the arguments that ADD
//     was given; DEL runs with them and the configured plugin directories;
//   - the default network: the port forwards tagged with the UUID (in
//     every karman table), the address reserved for the UUID, the host
//     veth named after it;
//   - the network namespace, NETNSDIR/UUID.
//
// o needs UUID, PodDir and ConfigDir. On success the damaged record is
// replaced by one that says the network is down, so that Teardown is a
// no-op from then on; on failure the damaged record stays and the error
// names what is left.
func TeardownByUUID(ctx context.Context, o Options) error {
	cfg, err := LoadConfig(o.ConfigDir)
	if err != nil {
		return fmt.Errorf("network teardown of pod %s without its record: %w", o.UUID, err)
	}
	var errs []error
	cni := libcni.NewCNIConfigWithCacheDir(cfg.CNIPluginDirs, filepath.Join(o.PodDir, cniCacheDir), nil)
	atts, err := cni.GetCachedAttachments(o.UUID)
	errs = append(errs, err)
	for _, a := range atts {
		l, err := libcni.ConfListFromBytes(a.Config)
		if err != nil {
			errs = append(errs, fmt.Errorf("CNI network %s: cached configuration: %w", a.Network, err))
			continue
		}
		rt := &libcni.RuntimeConf{ContainerID: o.UUID, NetNS: a.NetNS, IfName: a.IfName, Args: a.CniArgs, CapabilityArgs: a.CapabilityArgs}
		if _, err := os.Stat(rt.NetNS); err != nil {
			rt.NetNS = ""
		}
		if err := cni.DelNetworkList(ctx, l, rt); err != nil {
			errs = append(errs, fmt.Errorf("CNI DEL of network %s: %w", a.Network, err))
		}
	}
	errs = append(errs, removePortForwards(ctx, "", o.UUID))
	errs = append(errs, (&ipam{dir: filepath.Join(cfg.StateDir, cfg.Default.Bridge)}).release(o.UUID, netip.Addr{}))
	errs = append(errs, removeNetNS(filepath.Join(cfg.NetNSDir, o.UUID)))
	// Gone with the namespace, unless something else holds it.
	errs = append(errs, deleteLink(hostVethName(o.UUID)))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("network teardown of pod %s without its record: %w", o.UUID, err)
	}
	if err := os.MkdirAll(filepath.Join(o.PodDir, RecordDir), 0o755); err != nil {
		return err
	}
	return (&Record{Version: recordVersion, UUID: o.UUID, Down: true}).save(o.PodDir)
}

// Prune removes what pods of the default network share and Teardown
// leaves by design: the bridge, its nftables table, and the bind mount
// that makes the namespace directory shared. It removes each only when no
// pod uses it, here or in another data directory: the bridge while no
// link is attached to it, the namespace directory while it holds no
// namespace. It returns what it removed; what it kept and why is in kept.
func Prune(configDir string) (removed, kept []string, err error) {
	cfg, err := LoadConfig(configDir)
	if err != nil {
		return nil, nil, err
	}
	var errs []error
	bridge := cfg.Default.Bridge
	br, lerr := netlink.LinkByName(bridge)
	switch {
	case lerr != nil:
		// No bridge: the table may be left by a bridge deleted by hand.
		if ok, err := removeTable(tableName(bridge)); err != nil {
			errs = append(errs, err)
		} else if ok {
			removed = append(removed, "nftables table "+tableName(bridge))
		}
	default:
		if ports, err := busyPorts(br, cfg.NetNSDir); err != nil {
			errs = append(errs, err)
		} else if len(ports) > 0 {
			kept = append(kept, fmt.Sprintf("network %s: %d links are attached to the bridge (%s...)", bridge, len(ports), ports[0]))
		} else if err := RemoveNetwork(bridge); err != nil {
			errs = append(errs, err)
		} else {
			removed = append(removed, "network "+bridge)
		}
	}
	ents, err := os.ReadDir(cfg.NetNSDir)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		errs = append(errs, err)
	case len(ents) > 0:
		kept = append(kept, fmt.Sprintf("namespace directory %s: it holds %d namespaces", cfg.NetNSDir, len(ents)))
	default:
		if err := unix.Unmount(cfg.NetNSDir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", cfg.NetNSDir, err))
		} else if err := os.Remove(cfg.NetNSDir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s: %w", cfg.NetNSDir, err))
		} else {
			removed = append(removed, "namespace directory "+cfg.NetNSDir)
		}
	}
	return removed, kept, errors.Join(errs...)
}

// busyPorts names the links attached to br that a pod or someone else
// uses. The host veth of a pod whose namespace is gone is not: the kernel
// destroys it with the namespace, asynchronously, and busyPorts deletes
// it rather than wait.
func busyPorts(br netlink.Link, netnsDir string) ([]string, error) {
	links, err := nldump.Retry(netlink.LinkList)
	if err != nil {
		return nil, fmt.Errorf("links: %w", err)
	}
	live := map[string]bool{} // host veth names of the pods with a namespace
	ents, _ := os.ReadDir(netnsDir)
	for _, e := range ents {
		if len(e.Name()) == 36 {
			live[hostVethName(e.Name())] = true
		}
	}
	var out []string
	for _, l := range links {
		if l.Attrs().MasterIndex != br.Attrs().Index {
			continue
		}
		name := l.Attrs().Name
		if _, ok := l.(*netlink.Veth); ok && strings.HasPrefix(name, "kv") && len(name) == 14 && !live[name] {
			if err := deleteLink(name); err == nil {
				continue
			}
		}
		out = append(out, name)
	}
	return out, nil
}
