package network

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// PortMapping forwards a host port to a port of the pod.
type PortMapping struct {
	HostPort uint16 `json:"hostPort"`
	PodPort  uint16 `json:"podPort"`
	Protocol string `json:"protocol"` // tcp or udp
}

func (p PortMapping) String() string {
	return fmt.Sprintf("%d:%d/%s", p.HostPort, p.PodPort, p.Protocol)
}

// ParsePort parses HOSTPORT:PODPORT[/tcp|udp].
func ParsePort(s string) (PortMapping, error) {
	spec, proto, ok := strings.Cut(s, "/")
	if !ok {
		proto = "tcp"
	}
	if proto != "tcp" && proto != "udp" {
		return PortMapping{}, fmt.Errorf("--port %s: protocol %q: use tcp or udp", s, proto)
	}
	hs, ps, ok := strings.Cut(spec, ":")
	if !ok {
		return PortMapping{}, fmt.Errorf("--port %s: use HOSTPORT:PODPORT[/tcp|udp]", s)
	}
	h, err1 := strconv.ParseUint(hs, 10, 16)
	p, err2 := strconv.ParseUint(ps, 10, 16)
	if err1 != nil || err2 != nil || h == 0 || p == 0 {
		return PortMapping{}, fmt.Errorf("--port %s: ports are numbers from 1 to 65535", s)
	}
	return PortMapping{HostPort: uint16(h), PodPort: uint16(p), Protocol: proto}, nil
}

// CheckPorts refuses the same host port twice in one pod.
func CheckPorts(ports []PortMapping) error {
	seen := map[string]bool{}
	var errs []error
	for _, p := range ports {
		k := fmt.Sprintf("%s/%d", p.Protocol, p.HostPort)
		if seen[k] {
			errs = append(errs, fmt.Errorf("--port: host port %s given twice", k))
		}
		seen[k] = true
	}
	return errors.Join(errs...)
}

// deleteLink deletes a link by name; one that does not exist is fine.
func deleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}
