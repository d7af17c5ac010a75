package network

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/internal/nldump"
)

// The default network: a host bridge whose address is the pods' gateway,
// one veth pair per pod (the host end on the bridge, the pod end eth0 in
// the pod's namespace), an address per pod from the subnet (ipam), a
// default route, and the nftables rules of nat.go. Everything is done
// in-process over netlink: no plugin is exec'd on the start path.

// hostVethName names the host end of a pod's veth after the pod's UUID
// (unique, and findable by a leak check): "kv" and 12 hex digits.
func hostVethName(uuid string) string {
	return "kv" + strings.ReplaceAll(uuid, "-", "")[:12]
}

func (d *DefaultConfig) ipam(stateDir string) *ipam {
	return &ipam{dir: filepath.Join(stateDir, d.Bridge), prefix: d.prefix}
}

// rec is the record of a pod's attachment, before it is made.
func (d *DefaultConfig) rec(stateDir, uuid string, ports []PortMapping) *netRec {
	m := d.ipam(stateDir)
	return &netRec{
		Status: Status{Name: Default, Gateway: m.gateway().String()},
		Type:   Default, Bridge: d.Bridge, IPAMDir: m.dir, HostVeth: hostVethName(uuid),
		Table: tableName(d.Bridge), Ports: ports,
	}
}

// attachDefault attaches the pod to the default network as n.Interface.
func attachDefault(ctx context.Context, d *DefaultConfig, rec *Record, n *netRec, podDir string) error {
	m := &ipam{dir: n.IPAMDir, prefix: d.prefix}
	br, err := ensureBridge(d, m.gateway())
	if err != nil {
		return err
	}
	if err := ensureNAT(d); err != nil {
		return err
	}
	addr, err := m.allocate(ctx, rec.UUID, rec.NetNS)
	if err != nil {
		return err
	}
	n.Addresses = []string{netip.PrefixFrom(addr, d.prefix.Bits()).String()}
	if err := rec.save(podDir); err != nil {
		return err
	}
	if err := attachVeth(rec.NetNS, br, n.HostVeth, n.Interface, addr, d, m.gateway()); err != nil {
		return err
	}
	if len(n.Ports) > 0 {
		if err := addPortForwards(ctx, n.Table, rec.UUID, addr, n.Ports); err != nil {
			return err
		}
	}
	return nil
}

// teardownDefault undoes attachDefault but for the veth, which the kernel
// destroys with the pod's namespace (deleting it here would cost tens of
// milliseconds of RCU grace periods, and Teardown removes the namespace
// anyway).
func teardownDefault(rec *Record, n *netRec) error {
	var errs []error
	if len(n.Ports) > 0 {
		errs = append(errs, removePortForwards(context.Background(), n.Table, rec.UUID))
	}
	var hint netip.Addr
	if len(n.Addresses) > 0 {
		if p, err := netip.ParsePrefix(n.Addresses[0]); err == nil {
			hint = p.Addr()
		}
	}
	if n.IPAMDir != "" {
		errs = append(errs, (&ipam{dir: n.IPAMDir}).release(rec.UUID, hint))
	}
	return errors.Join(errs...)
}

// ensureBridge returns the network's bridge, creating and configuring it
// the first time (or after someone deleted it). Concurrent karman
// processes may race here: creating what exists is not an error.
func ensureBridge(d *DefaultConfig, gw netip.Addr) (netlink.Link, error) {
	br, err := netlink.LinkByName(d.Bridge)
	if err == nil {
		if _, ok := br.(*netlink.Bridge); !ok {
			return nil, fmt.Errorf("%s exists and is a %s, not a bridge; name another bridge in %s: %w", d.Bridge, br.Type(), ConfigFile, ErrConfig)
		}
		if br.Attrs().Flags&net.FlagUp != 0 {
			return br, forwarding(d.Bridge)
		}
	} else {
		if err := checkSubnetFree(d); err != nil {
			return nil, err
		}
		la := netlink.NewLinkAttrs()
		la.Name = d.Bridge
		la.MTU = d.MTU
		// A fixed address: a bridge otherwise takes the lowest of its
		// ports', and changes it as pods come and go.
		la.HardwareAddr = randomMAC()
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create bridge %s: %w", d.Bridge, err)
		}
		if br, err = netlink.LinkByName(d.Bridge); err != nil {
			return nil, fmt.Errorf("bridge %s: %w", d.Bridge, err)
		}
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: gw.AsSlice(), Mask: net.CIDRMask(d.prefix.Bits(), 32)}}
	if err := netlink.AddrAdd(br, a); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("address %s on bridge %s: %w", a.IPNet, d.Bridge, err)
	}
	if err := forwarding(d.Bridge); err != nil {
		return nil, err
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return nil, fmt.Errorf("bridge %s up: %w", d.Bridge, err)
	}
	return br, nil
}

// checkSubnetFree refuses a subnet that a route of the host already covers
// or falls in (the host's LAN, another bridge): giving it to a new bridge
// would cut the host off from those addresses.
func checkSubnetFree(d *DefaultConfig) error {
	routes, err := nldump.Retry(func() ([]netlink.Route, error) { return netlink.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP == nil {
			continue // the default route
		}
		a, ok := netip.AddrFromSlice(r.Dst.IP.To4())
		if !ok {
			continue
		}
		bits, _ := r.Dst.Mask.Size()
		if bits == 0 {
			continue
		}
		if p := netip.PrefixFrom(a, bits).Masked(); p.Overlaps(d.prefix) {
			dev := ""
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
				if l.Attrs().Name == d.Bridge {
					continue // made meanwhile by another karman
				}
				dev = " on " + l.Attrs().Name
			}
			return fmt.Errorf("the default network's subnet %s overlaps the host's route to %s%s; choose another subnet in %s: %w", d.prefix, p, dev, ConfigFile, ErrConfig)
		}
	}
	return nil
}

// forwarding sets, on every pod start (someone may have reset them), the
// forwarding of IPv4 for traffic between the pods and the world, and
// route_localnet on the bridge so that 127.0.0.1:HOSTPORT can be forwarded
// to a pod.
func forwarding(bridge string) error {
	for _, s := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv4/conf/" + bridge + "/route_localnet"} {
		if err := os.WriteFile(s, []byte("1"), 0); err != nil {
			return fmt.Errorf("sysctl %s: %w", s, err)
		}
	}
	return nil
}

func randomMAC() net.HardwareAddr {
	m := make(net.HardwareAddr, 6)
	rand.Read(m)
	m[0] = m[0]&0xfe | 0x02 // unicast, locally administered
	return m
}

// attachVeth creates the pod's veth pair with its pod end directly in the
// pod's namespace, and configures both ends.
func attachVeth(nsPath string, br netlink.Link, hostName, ifName string, addr netip.Addr, d *DefaultConfig, gw netip.Addr) error {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", nsPath, err)
	}
	defer ns.Close()
	la := netlink.NewLinkAttrs()
	la.Name = hostName
	la.MasterIndex = br.Attrs().Index
	la.MTU = br.Attrs().MTU
	la.Flags = net.FlagUp // the host end is created up
	veth := &netlink.Veth{LinkAttrs: la, PeerName: ifName, PeerNamespace: netlink.NsFd(ns)}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s: %w", hostName, err)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", nsPath, err)
	}
	defer h.Close()
	pod, err := h.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("pod end of veth %s: %w", hostName, err)
	}
	ipn := &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(d.prefix.Bits(), 32)}
	if err := h.AddrAdd(pod, &netlink.Addr{IPNet: ipn}); err != nil {
		return fmt.Errorf("address %s on %s: %w", ipn, ifName, err)
	}
	if err := h.LinkSetUp(pod); err != nil {
		return fmt.Errorf("%s up: %w", ifName, err)
	}
	// lo is the pod init's to bring up, as for every pod.
	r := &netlink.Route{LinkIndex: pod.Attrs().Index, Gw: gw.AsSlice(), Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}}
	if err := h.RouteAdd(r); err != nil {
		return fmt.Errorf("default route via %s: %w", gw, err)
	}
	return nil
}
