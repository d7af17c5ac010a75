package stage0

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/karman-project/karman/network"
	"github.com/karman-project/karman/stage1/poddir"
)

// DialPod connects to TCP port on the loopback of running pod uuid's
// network namespace (the host's for a pod of --net=host): what a server
// listening on 127.0.0.1 or ::1 in any app of the pod accepts.
func (r *Runtime) DialPod(ctx context.Context, uuid string, port int) (net.Conn, error) {
	p, err := r.find(uuid)
	if err != nil {
		return nil, err
	}
	if s := p.state(); s != Running {
		return nil, fmt.Errorf("port forward: pod %s is %s, not running: %w", p.uuid, s, ErrState)
	}
	pd, err := poddir.Load(p.path)
	if err != nil {
		return nil, err
	}
	ns := pd.NetNS
	switch {
	case pd.Net == network.Host:
		ns = ""
	case ns == "":
		// --net=none: the init's own namespace. Its PID is trusted
		// while the pod lock is held, which state() just saw.
		b, err := os.ReadFile(filepath.Join(p.path, poddir.InitPID))
		pid, aerr := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || aerr != nil {
			return nil, fmt.Errorf("port forward: pod %s: its init's PID: %w", p.uuid, ErrState)
		}
		ns = fmt.Sprintf("/proc/%d/ns/net", pid)
	}
	c, err := network.DialLoopback(ctx, ns, port)
	if err != nil {
		return nil, fmt.Errorf("port forward: pod %s: %w", p.uuid, err)
	}
	if p.state() != Running { // the PID may have been another's by now
		c.Close()
		return nil, fmt.Errorf("port forward: pod %s ended: %w", p.uuid, ErrState)
	}
	return c, nil
}

// PortForward copies stream to TCP port on the loopback of pod uuid
// (DialPod) and back, until the pod's side has ended (the server closed
// the connection, the client's EOF passed on to it first or not) or ctx
// is done; it closes stream. What still reads stream then ends with it.
func (r *Runtime) PortForward(ctx context.Context, uuid string, port int, stream io.ReadWriteCloser) error {
	defer stream.Close()
	c, err := r.DialPod(ctx, uuid, port)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	go func() {
		io.Copy(c, stream)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite() // the client's EOF, passed on
		}
	}()
	_, err = io.Copy(stream, c)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("port forward: pod %s port %d: %w", uuid, port, err)
	}
	return nil
}

// ServePortForward forwards every connection l accepts to TCP port on the
// loopback of pod uuid (PortForward), until ctx is done or the pod is no
// longer running; it closes l. A connection the pod refuses is closed
// and reported through Warn.
func (r *Runtime) ServePortForward(ctx context.Context, uuid string, l net.Listener, port int) error {
	p, err := r.find(uuid)
	if err != nil {
		l.Close()
		return err
	}
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	defer l.Close()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("port forward: %w", err)
		}
		if p.state() != Running {
			c.Close()
			return fmt.Errorf("port forward: pod %s ended: %w", p.uuid, ErrState)
		}
		go func() {
			if err := r.PortForward(ctx, p.uuid, port, c); err != nil && ctx.Err() == nil && r.Warn != nil {
				r.Warn(err.Error())
			}
		}()
	}
}
