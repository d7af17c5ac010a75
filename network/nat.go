package network

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/internal/lockfile"
)

// NAT of the default network, in one nftables table per bridge
// ("karman-<bridge>", family ip), spoken over netlink in-process (no nft or
// iptables exec'd):
//
//	chain postrouting (nat, srcnat):
//	    ip saddr SUBNET ip daddr != SUBNET masquerade      once per network
//	    ip saddr 127.0.0.0/8 oifname BRIDGE masquerade      once per network
//	    ip saddr SUBNET oifname BRIDGE ct status dnat masquerade   once (hairpin)
//	chain prerouting (nat, dstnat), chain output (nat, dstnat):
//	    fib daddr type local meta l4proto P th dport HOSTPORT dnat to POD:PORT
//	                                                        per pod and port
//
// The output chain and the second masquerade make 127.0.0.1:HOSTPORT work
// from the host itself (with route_localnet on the bridge: a packet from
// 127.0.0.1 may then leave through it, and leaves with the bridge's
// address). Per-pod rules carry "karman pod=UUID port=P/HOSTPORT" as user
// data: that is how teardown finds them and how a taken host port is
// recognised.

// tableName is the nftables table of a bridge's network.
func tableName(bridge string) string { return "karman-" + bridge }

const tablePrefix = "karman-"

// ipsDstNAT is the conntrack status bit of a destination-NATed connection.
const ipsDstNAT = 1 << 5

func natChains(t *nftables.Table) (post, pre, out *nftables.Chain) {
	post = &nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource}
	pre = &nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest}
	out = &nftables.Chain{Name: "output", Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest}
	return
}

// ensureNAT installs the network's table and its masquerade rules, once: a
// table that exists is left as it is. The table, its chains and rules are
// created in one transaction that fails as a whole if another process
// created the table first.
func ensureNAT(d *DefaultConfig) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	name := tableName(d.Bridge)
	if _, err := c.ListTableOfFamily(name, nftables.TableFamilyIPv4); err == nil {
		return nil
	}
	t := c.CreateTable(&nftables.Table{Name: name, Family: nftables.TableFamilyIPv4})
	post, pre, out := natChains(t)
	c.AddChain(post)
	c.AddChain(pre)
	c.AddChain(out)
	if *d.Masquerade {
		e := append(matchPrefix(12, d.prefix, expr.CmpOpEq), matchPrefix(16, d.prefix, expr.CmpOpNeq)...)
		c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: append(e, &expr.Masq{})})
	}
	lo := netip.MustParsePrefix("127.0.0.0/8")
	e := append(matchPrefix(12, lo, expr.CmpOpEq),
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(d.Bridge)},
		&expr.Masq{})
	c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: e})
	// Hairpin: a pod that reaches a forwarded port through the host gets
	// the answer through the host too, not straight over the bridge.
	e = append(matchPrefix(12, d.prefix, expr.CmpOpEq),
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(d.Bridge)},
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binary.NativeEndian.AppendUint32(nil, ipsDstNAT), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		&expr.Masq{})
	c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: e})
	if err := c.Flush(); err != nil {
		if _, lerr := c.ListTableOfFamily(name, nftables.TableFamilyIPv4); lerr == nil {
			return nil // created meanwhile by another karman
		}
		return fmt.Errorf("nftables table %s: %w", name, err)
	}
	return nil
}

// matchPrefix matches the IPv4 address at offset (12 source, 16
// destination) of the network header against p.
func matchPrefix(offset uint32, p netip.Prefix, op expr.CmpOp) []expr.Any {
	mask := net.CIDRMask(p.Bits(), 32)
	a := p.Masked().Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: a[:]},
	}
}

func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func portTag(uuid string, p PortMapping) string {
	return fmt.Sprintf("karman pod=%s port=%s/%d", uuid, p.Protocol, p.HostPort)
}

// portsLock serialises the check for taken host ports and the adding of
// forwards across karman processes.
func portsLock(ctx context.Context) (*lockfile.Lock, error) {
	if err := os.MkdirAll(DefaultStateDir, 0o700); err != nil {
		return nil, err
	}
	return lockfile.Acquire(ctx, filepath.Join(DefaultStateDir, "ports.lock"), true)
}

// forwardedPorts returns the host ports karman forwards now, in every
// karman table, as "proto/port" -> pod UUID.
func forwardedPorts(c *nftables.Conn) (map[string]string, error) {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	out := map[string]string{}
	for _, t := range tables {
		if !strings.HasPrefix(t.Name, tablePrefix) {
			continue
		}
		_, pre, _ := natChains(t)
		rules, err := c.GetRules(t, pre)
		if err != nil {
			continue // a table without the chain is none of ours
		}
		for _, r := range rules {
			var pod, port string
			for _, f := range strings.Fields(string(r.UserData)) {
				if v, ok := strings.CutPrefix(f, "pod="); ok {
					pod = v
				} else if v, ok := strings.CutPrefix(f, "port="); ok {
					port = v
				}
			}
			if pod != "" && port != "" {
				out[port] = pod
			}
		}
	}
	return out, nil
}

// addPortForwards forwards each host port to the pod's address, after
// checking (under the ports lock) that no other pod and no host socket
// has it.
func addPortForwards(ctx context.Context, table, uuid string, addr netip.Addr, ports []PortMapping) error {
	l, err := portsLock(ctx)
	if err != nil {
		return err
	}
	defer l.Unlock()
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if err := portsFree(c, ports); err != nil {
		return err
	}
	t := &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}
	_, pre, out := natChains(t)
	ip := addr.As4()
	for _, p := range ports {
		proto := byte(unix.IPPROTO_TCP)
		if p.Protocol == "udp" {
			proto = unix.IPPROTO_UDP
		}
		e := []expr.Any{
			&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, unix.RTN_LOCAL)},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(p.HostPort)},
			&expr.Immediate{Register: 1, Data: ip[:]},
			&expr.Immediate{Register: 2, Data: be16(p.PodPort)},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
		}
		tag := []byte(portTag(uuid, p))
		c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: e, UserData: tag})
		c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: e, UserData: tag})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("port forwards: nftables: %w", err)
	}
	return nil
}

// portsFree fails with ErrPortTaken for a host port that a pod forwards
// already or that a host socket is bound to.
func portsFree(c *nftables.Conn, ports []PortMapping) error {
	fwd, err := forwardedPorts(c)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range ports {
		key := fmt.Sprintf("%s/%d", p.Protocol, p.HostPort)
		if pod, ok := fwd[key]; ok {
			errs = append(errs, fmt.Errorf("--port %s: host port %s is forwarded to pod %s already; choose another host port or stop that pod: %w", p, key, pod, ErrPortTaken))
			continue
		}
		if err := HostPortFree(p); err != nil {
			errs = append(errs, fmt.Errorf("--port %s: host port %s is in use on the host (%v); choose another host port: %w", p, key, err, ErrPortTaken))
		}
	}
	return errors.Join(errs...)
}

// HostPortFree tells whether the host port of p can be bound now, on
// every host address (the node agent asks it too, at admission).
func HostPortFree(p PortMapping) error {
	addr := fmt.Sprintf(":%d", p.HostPort)
	if p.Protocol == "udp" {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return l.Close()
}

// checkPorts refuses taken host ports early, before anything is made; the
// check is repeated under the ports lock when the forwards are added.
func checkPorts(ports []PortMapping) error {
	if len(ports) == 0 {
		return nil
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	return portsFree(c, ports)
}

// removePortForwards deletes the pod's forwards from table, or from every
// karman table when table is "". It holds the ports lock, as adding does,
// so that two teardowns of one pod never delete the same rule; a rule or
// table that someone else removed meanwhile (ENOENT) counts as removed.
func removePortForwards(ctx context.Context, table, uuid string) error {
	ctx, cancel := context.WithTimeout(ctx, ipamLockTimeout)
	defer cancel()
	l, err := portsLock(ctx)
	if err != nil {
		return fmt.Errorf("remove port forwards of pod %s: %w", uuid, err)
	}
	defer l.Unlock()
	for try := 0; ; try++ {
		err := deletePodRules(table, uuid)
		if err == nil || !errors.Is(err, unix.ENOENT) || try == 2 {
			return err
		}
	}
}

// deletePodRules deletes, in one transaction, the forwards of pod uuid in
// table (every karman table when "").
func deletePodRules(table, uuid string) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	n := 0
	for _, t := range tables {
		if table != "" && t.Name != table || table == "" && !strings.HasPrefix(t.Name, tablePrefix) {
			continue
		}
		_, pre, out := natChains(t)
		for _, ch := range []*nftables.Chain{pre, out} {
			rules, err := c.GetRules(t, ch)
			if errors.Is(err, unix.ENOENT) {
				continue // no such chain (any more)
			}
			if err != nil {
				return fmt.Errorf("nftables %s/%s: %w", t.Name, ch.Name, err)
			}
			for _, r := range rules {
				if strings.Contains(string(r.UserData), "pod="+uuid+" ") {
					if err := c.DelRule(r); err != nil {
						return err
					}
					n++
				}
			}
		}
	}
	if n == 0 {
		return nil
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("remove port forwards of pod %s: %w", uuid, err)
	}
	return nil
}

// PodRules lists the nftables rules that name a pod, in every karman table
// (for tests and leak checks).
func PodRules(uuid string) ([]string, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, err
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, t := range tables {
		if !strings.HasPrefix(t.Name, tablePrefix) {
			continue
		}
		post, pre, o := natChains(t)
		for _, ch := range []*nftables.Chain{post, pre, o} {
			rules, _ := c.GetRules(t, ch)
			for _, r := range rules {
				if strings.Contains(string(r.UserData), "pod="+uuid+" ") {
					out = append(out, t.Name+"/"+ch.Name+": "+string(r.UserData))
				}
			}
		}
	}
	return out, nil
}

// RemoveNetwork deletes a default network's bridge and nftables table
// (`karman gc --all` through Prune, tests, and an admin changing the
// network's configuration).
func RemoveNetwork(bridge string) error {
	_, err := removeTable(tableName(bridge))
	return errors.Join(err, deleteLink(bridge))
}

// removeTable deletes an nftables table (ip family) if it exists, and
// says whether it did.
func removeTable(name string) (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, fmt.Errorf("nftables: %w", err)
	}
	if _, err := c.ListTableOfFamily(name, nftables.TableFamilyIPv4); err != nil {
		return false, nil
	}
	c.DelTable(&nftables.Table{Name: name, Family: nftables.TableFamilyIPv4})
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return false, fmt.Errorf("remove nftables table %s: %w", name, err)
	}
	return true, nil
}
