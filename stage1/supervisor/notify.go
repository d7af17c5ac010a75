package supervisor

import (
	"fmt"
	"net"
	"os"

	"github.com/karman-project/karman/stage1/internal/wire"
	"github.com/karman-project/karman/stage1/poddir"
)

// sdNotify sends one sd_notify datagram (e.g. "READY=1") to addr, the
// value of $NOTIFY_SOCKET: a path or, with a leading '@', an abstract name.
func sdNotify(addr, state string) error {
	return wire.WithSocketPath(addr, func(p string) error {
		c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: p, Net: "unixgram"})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(state))
		return err
	})
}

// startRelay binds the pod's NotifySocket, which the init bind-mounts into
// the apps as /run/notify.sock, and forwards every datagram an app sends
// there to $NOTIFY_SOCKET. The relay is needed, not just convenient:
// systemd (NotifyAccess=main) only believes notifications from the unit's
// main PID, which is the supervisor, and an abstract $NOTIFY_SOCKET cannot
// be reached from the pod's network namespace at all.
func (s *supervisor) startRelay() error {
	path := s.path(poddir.NotifySocket)
	err := wire.WithSocketPath(path, func(p string) error {
		c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
		s.relay = c
		return err
	})
	if err != nil {
		return fmt.Errorf("notify relay: %w", err)
	}
	// Apps may run as any user; the pod directory guards the socket.
	if err := os.Chmod(path, 0o666); err != nil {
		return fmt.Errorf("notify relay: %w", err)
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := s.relay.Read(buf)
			if err != nil {
				return
			}
			s.log.Debug("relaying notification", "state", string(buf[:n]))
			if err := sdNotify(s.notify, string(buf[:n])); err != nil {
				s.log.Warn("relaying sd_notify", "err", err)
			}
		}
	}()
	return nil
}
