package testenv

import (
	"crypto/rand"
	"fmt"
	"net"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/karman-project/karman/internal/nldump"
)

// FreeSubnet picks x for a test network PREFIX.x.0/24 (prefix is two
// octets, such as "10.231") that no route of the host's overlaps: another
// test run on the machine may hold one. bridges names the bridges such
// runs leave (a prefix of their names), for the error when none is free.
func FreeSubnet(t testing.TB, prefix, bridges string) int {
	t.Helper()
	routes, err := nldump.Retry(func() ([]netlink.Route, error) { return netlink.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		t.Fatalf("list the host's routes: %v", err)
	}
	b := make([]byte, 1)
	for range 100 {
		rand.Read(b)
		x := 1 + int(b[0])%250
		_, subnet, _ := net.ParseCIDR(fmt.Sprintf("%s.%d.0/24", prefix, x))
		if !slices.ContainsFunc(routes, func(r netlink.Route) bool {
			if r.Dst == nil {
				return false // the default route
			}
			if ones, _ := r.Dst.Mask.Size(); ones == 0 {
				return false
			}
			return r.Dst.Contains(subnet.IP) || subnet.Contains(r.Dst.IP)
		}) {
			return x
		}
	}
	t.Fatalf("no free %s.x.0/24 for a test network: remove the test bridges left by other runs (ip -br link | grep '^%s')", prefix, bridges)
	return 0
}
