package network

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// DNS is what the pod's /etc/resolv.conf holds, from --dns and
// --dns-search.
type DNS struct {
	// Servers are nameserver addresses, or the one word "host" (the host's
	// resolv.conf) or "none" (leave the image's /etc/resolv.conf alone).
	// Empty: the networks' choice (see ResolvConf).
	Servers []string
	Search  []string
	// Options are resolv.conf options (ndots:5, ...), from the CRI's DNS
	// config.
	Options []string `json:",omitempty"`
}

// Check refuses malformed --dns values.
func (d DNS) Check() error {
	for _, s := range d.Servers {
		switch s {
		case "host", "none":
			if len(d.Servers) > 1 {
				return fmt.Errorf("--dns %s cannot be combined with other --dns values", s)
			}
		default:
			if _, err := netip.ParseAddr(s); err != nil {
				return fmt.Errorf("--dns %q: use an IP address, host or none", s)
			}
		}
	}
	for _, s := range d.Search {
		if s == "" || strings.ContainsAny(s, " \t\n") {
			return fmt.Errorf("--dns-search %q: use a domain name", s)
		}
	}
	for _, o := range d.Options {
		if o == "" || strings.ContainsAny(o, " \t\n") {
			return fmt.Errorf("DNS option %q: use one resolv.conf option, as ndots:5", o)
		}
	}
	if len(d.Search) > 0 && len(d.Servers) == 1 && d.Servers[0] == "none" {
		return fmt.Errorf("--dns-search has no effect with --dns none")
	}
	return nil
}

const hostResolvConf = "/etc/resolv.conf"

// ResolvConf is the content of the pod's /etc/resolv.conf, and false when
// the image's own is to be left alone. netName is the pod's first network;
// rec its record (nil for none and host). Without --dns a pod on the host's
// network gets the host's file, a pod without network none, and a pod on
// other networks the nameservers its CNI plugins returned or else the
// host's nameservers that are not loopback addresses (which mean nothing in
// the pod's namespace).
func ResolvConf(d DNS, netName string, rec *Record) (string, bool) {
	var servers, search []string
	switch {
	case len(d.Servers) == 1 && d.Servers[0] == "none":
		return "", false
	case len(d.Servers) == 1 && d.Servers[0] == "host", len(d.Servers) == 0 && netName == Host:
		b, err := os.ReadFile(hostResolvConf)
		if err != nil {
			return "", false
		}
		if len(d.Search) == 0 {
			return string(b), true
		}
		servers, search = parseResolvConf(string(b), true)
	case len(d.Servers) > 0:
		servers = d.Servers
	case netName == None:
		if len(d.Search) == 0 {
			return "", false
		}
	default:
		if rec != nil {
			for _, n := range rec.Networks {
				servers = append(servers, n.Nameservers...)
				search = append(search, n.Search...)
			}
		}
		if len(servers) == 0 {
			if b, err := os.ReadFile(hostResolvConf); err == nil {
				var s2 []string
				servers, s2 = parseResolvConf(string(b), false)
				if len(search) == 0 {
					search = s2
				}
			}
		}
	}
	if len(d.Search) > 0 {
		search = d.Search
	}
	var b strings.Builder
	b.WriteString("# written by karman\n")
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(d.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(d.Options, " "))
	}
	return b.String(), true
}

// parseResolvConf returns the nameservers and search domains of a
// resolv.conf; loopback nameservers only with keepLoopback.
func parseResolvConf(s string, keepLoopback bool) (servers, search []string) {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			if a, err := netip.ParseAddr(f[1]); err == nil && (keepLoopback || !a.IsLoopback()) {
				servers = append(servers, f[1])
			}
		case "search", "domain":
			search = f[1:]
		}
	}
	return servers, search
}

// Hosts is the pod's /etc/hosts: localhost, and the pod's host name (and
// its name, when it has one) on each of its addresses, or on 127.0.1.1
// when it has none.
func Hosts(hostname, podName string, rec *Record) string {
	names := hostname
	if podName != "" && podName != hostname {
		names += " " + podName
	}
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	n := 0
	if rec != nil {
		for _, nw := range rec.Networks {
			for _, a := range nw.Addresses {
				if p, err := netip.ParsePrefix(a); err == nil {
					fmt.Fprintf(&b, "%s\t%s\n", p.Addr(), names)
					n++
				}
			}
		}
	}
	if n == 0 {
		fmt.Fprintf(&b, "127.0.1.1\t%s\n", names)
	}
	return b.String()
}
