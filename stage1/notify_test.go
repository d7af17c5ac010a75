package stage1

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/karman-project/karman/stage1/poddir"
	"golang.org/x/sys/unix"
)

// fakeSystemd listens on a unixgram NOTIFY_SOCKET.
func fakeSystemd(t *testing.T, addr string) <-chan string {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ch := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				close(ch)
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return ch
}

// expectNotify waits for a datagram containing want (a minute is a
// safety net only) and returns the datagrams before it.
func expectNotify(t *testing.T, ch <-chan string, want string) []string {
	t.Helper()
	timeout := time.After(time.Minute)
	var seen []string
	for {
		select {
		case got := <-ch:
			if strings.Contains(got, want) {
				return seen
			}
			seen = append(seen, got)
		case <-timeout:
			t.Fatalf("no %q notification", want)
		}
	}
}

func TestNotifyReady(t *testing.T) {
	t.Parallel()
	for _, abstract := range []bool{false, true} {
		name := map[bool]string{false: "path", true: "abstract"}[abstract]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			addr := filepath.Join(t.TempDir(), "notify.sock")
			if abstract {
				addr = "@karman-test-" + randomHex()
			}
			ch := fakeSystemd(t, addr)
			p := newPod(t, nil, sh("app", "echo $NOTIFY_SOCKET; exec sleep 1000"))
			p.start("NOTIFY_SOCKET=" + addr)
			expectNotify(t, ch, "READY=1")
			p.signal(unix.SIGTERM)
			expectNotify(t, ch, "STOPPING=1")
			p.expect(p.wait(), 143)
			if strings.TrimSpace(p.log("app")) != "" {
				t.Errorf("the app got NOTIFY_SOCKET: %q", p.log("app"))
			}
		})
	}
}

// TestNotifyApp: the app gets NOTIFY_SOCKET and its notifications reach
// systemd through the supervisor; karman sends no READY=1 of its own.
func TestNotifyApp(t *testing.T) {
	t.Parallel()
	bothStarts(t, func(t *testing.T, viaExec bool) {
		addr := filepath.Join(t.TempDir(), "notify.sock")
		ch := fakeSystemd(t, addr)
		// busybox's logger writes datagrams to /dev/log: point it at the
		// notify socket.
		p := newPod(t, func(p *poddir.Pod) { p.NotifyApp = true }, sh("app",
			`echo "$NOTIFY_SOCKET"; test -S "$NOTIFY_SOCKET" && echo socket; ln -s "$NOTIFY_SOCKET" /dev/log && logger -t app READY=1-from-app; exec sleep 1000`))
		p.viaExec = viaExec
		p.start("NOTIFY_SOCKET=" + addr)
		p.waitLog("app", "socket")
		seen := expectNotify(t, ch, "READY=1-from-app")
		p.signal(unix.SIGTERM)
		seen = append(seen, expectNotify(t, ch, "STOPPING=1")...)
		p.expect(p.wait(), 143)
		if got := strings.Split(p.log("app"), "\n")[0]; got != poddir.AppNotifySocket {
			t.Errorf("NOTIFY_SOCKET in the app = %q", got)
		}
		for _, m := range seen {
			if m == "READY=1" {
				t.Errorf("karman sent READY=1 itself")
			}
		}
	})
}
