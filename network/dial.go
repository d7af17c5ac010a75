package network

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// DialLoopback connects to TCP port on the loopback of the network
// namespace netns (a path: a bind-mounted namespace, /proc/PID/ns/net; ""
// the caller's own): 127.0.0.1 first, then ::1. This is port forwarding
// into a pod (the CRI's PortForward): the socket is made in the pod's
// namespace, and stays there, from a goroutine locked to its thread for
// the while; the thread returns to its own namespace, or, when it cannot,
// ends with the goroutine.
func DialLoopback(ctx context.Context, netns string, port int) (net.Conn, error) {
	if port <= 0 || port > 65535 {
		return nil, fmt.Errorf("port %d: want 1 to 65535", port)
	}
	if netns == "" {
		return dialLoopback(ctx, port)
	}
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		c, back, err := dialIn(ctx, netns, port)
		if back {
			runtime.UnlockOSThread()
		} // else the runtime ends the thread with this goroutine
		done <- result{c, err}
	}()
	r := <-done
	return r.c, r.err
}

// dialIn is DialLoopback on a locked thread; back says the thread is in
// its own network namespace again.
func dialIn(ctx context.Context, netns string, port int) (c net.Conn, back bool, err error) {
	self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, true, fmt.Errorf("own network namespace: %w", err)
	}
	defer unix.Close(self)
	fd, err := unix.Open(netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, true, fmt.Errorf("the pod's network namespace: %w", err)
	}
	err = unix.Setns(fd, unix.CLONE_NEWNET)
	unix.Close(fd)
	if err != nil {
		return nil, true, fmt.Errorf("join the pod's network namespace %s: %w", netns, err)
	}
	c, err = dialLoopback(ctx, port)
	if serr := unix.Setns(self, unix.CLONE_NEWNET); serr != nil {
		if c != nil {
			c.Close()
		}
		return nil, false, fmt.Errorf("return from the pod's network namespace: %w", serr)
	}
	return c, true, err
}

// dialLoopback connects to port on 127.0.0.1, or else ::1, from the
// calling thread's network namespace.
func dialLoopback(ctx context.Context, port int) (net.Conn, error) {
	var d net.Dialer
	p := strconv.Itoa(port)
	c, err4 := d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", p))
	if err4 == nil {
		return c, nil
	}
	c, err6 := d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", p))
	if err6 == nil {
		return c, nil
	}
	return nil, fmt.Errorf("nothing accepts connections on port %d of the pod's loopback: %w (::1: %v)", port, err4, err6)
}
