package k8s

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// Connection is one socket of a process with a peer.
type Connection struct {
	PID    int
	Proto  string
	Local  string
	Remote net.IP
	Port   int
}

func (c Connection) String() string {
	return fmt.Sprintf("pid %d %s %s -> %s", c.PID, c.Proto, c.Local, net.JoinHostPort(c.Remote.String(), fmt.Sprint(c.Port)))
}

// Connections lists the sockets of the processes pids that have a peer
// (TCP in any state but LISTEN, connected UDP), as the host's network
// namespace sees them.
func Connections(pids []int) ([]Connection, error) {
	var out []Connection
	for _, pid := range pids {
		inodes := map[string]bool{}
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			continue // gone
		}
		for _, fd := range fds {
			l, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
			if err == nil && strings.HasPrefix(l, "socket:[") {
				inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
			}
		}
		for _, proto := range []string{"tcp", "tcp6", "udp", "udp6"} {
			f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, proto))
			if err != nil {
				return nil, err
			}
			sc := bufio.NewScanner(f)
			sc.Scan() // header
			for sc.Scan() {
				fs := strings.Fields(sc.Text())
				if len(fs) < 10 || !inodes[fs[9]] {
					continue
				}
				if strings.HasPrefix(proto, "tcp") && fs[3] == "0A" { // LISTEN
					continue
				}
				ip, port, err := hexAddr(fs[2])
				if err != nil || ip.IsUnspecified() {
					continue
				}
				lip, lport, _ := hexAddr(fs[1])
				out = append(out, Connection{PID: pid, Proto: proto, Local: net.JoinHostPort(lip.String(), fmt.Sprint(lport)), Remote: ip, Port: port})
			}
			f.Close()
		}
	}
	return out, nil
}

// hexAddr decodes /proc/net/tcp's ADDR:PORT (the address in host byte
// order, 32-bit words).
func hexAddr(s string) (net.IP, int, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return nil, 0, fmt.Errorf("bad address %q", s)
	}
	b, err := hex.DecodeString(a)
	if err != nil {
		return nil, 0, err
	}
	for i := 0; i+4 <= len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	var port int
	if _, err := fmt.Sscanf(p, "%X", &port); err != nil {
		return nil, 0, err
	}
	return net.IP(b), port, nil
}

// OffLoopback returns the connections of pids whose peer is neither a
// loopback address nor one of allowed (the cluster's pods).
func OffLoopback(pids []int, allowed []net.IP) ([]Connection, error) {
	cs, err := Connections(pids)
	if err != nil {
		return nil, err
	}
	var out []Connection
	for _, c := range cs {
		ok := c.Remote.IsLoopback()
		if v4 := c.Remote.To4(); v4 != nil && v4.IsLoopback() {
			ok = true
		}
		for _, a := range allowed {
			ok = ok || a.Equal(c.Remote)
		}
		if !ok {
			out = append(out, c)
		}
	}
	return out, nil
}
