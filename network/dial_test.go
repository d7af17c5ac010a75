package network

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/karman-project/karman/tests/testenv"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestDialLoopback: a connection made by DialLoopback reaches a server on
// the loopback of another network namespace, not the caller's.
func TestDialLoopback(t *testing.T) {
	testenv.RequireRoot(t, "network namespaces")
	dir := filepath.Join(t.TempDir(), "netns")
	ns := filepath.Join(dir, "ns")
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) }) // createNetNS made it a mount point
	if err := createNetNS(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeNetNS(ns) })
	// A server in the namespace: its socket is made there, on a thread
	// that stays there.
	lc := make(chan net.Listener, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends in the namespace
		fd, err := unix.Open(ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil || unix.Setns(fd, unix.CLONE_NEWNET) != nil {
			lc <- nil
			return
		}
		unix.Close(fd)
		// A new namespace's loopback is down (the pod init brings a
		// pod's up).
		if lo, err := netlink.LinkByName("lo"); err != nil || netlink.LinkSetUp(lo) != nil {
			lc <- nil
			return
		}
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			lc <- nil
			return
		}
		lc <- l
	}()
	l := <-lc
	if l == nil {
		t.Fatal("no server in the namespace")
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "from the namespace\n")
			c.Close()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	c, err := DialLoopback(context.Background(), ns, port)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	if string(b) != "from the namespace\n" {
		t.Errorf("read %q", b)
	}
	// The host's loopback has no such server (the port is free here, or
	// someone else's: then what answers is not ours).
	if c, err := DialLoopback(context.Background(), "", port); err == nil {
		b, _ := io.ReadAll(c)
		c.Close()
		if string(b) == "from the namespace\n" {
			t.Errorf("the host's port %d reached the namespace's server", port)
		}
	}
	if _, err := DialLoopback(context.Background(), ns, port+1); err == nil {
		t.Errorf("port %d, which nothing listens on, was reached", port+1)
	}
}
