package supervisor

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/karman-project/karman/stage1/internal/wire"
	"github.com/karman-project/karman/stage1/poddir"
	"golang.org/x/sys/unix"
)

// handleSignals turns the supervisor's signals into requests to the init:
// SIGTERM and SIGINT stop the pod (a second one kills it), the others are
// forwarded to the apps. SIGPIPE is caught only so that a closed stdout
// does not kill the pod.
func (s *supervisor) handleSignals(sigc <-chan os.Signal) {
	for sig := range sigc {
		ss := sig.(syscall.Signal)
		var m *wire.Message
		switch ss {
		case unix.SIGPIPE:
			continue
		case poddir.ReopenLogsSignal:
			s.reopenLogs()
			continue
		case unix.SIGTERM, unix.SIGINT:
			m = &wire.Message{T: wire.MsgStop, Force: s.stopping}
			if !s.stopping && s.notify != "" {
				sdNotify(s.notify, "STOPPING=1")
			}
			s.stopping = true
		default:
			m = &wire.Message{T: wire.MsgSignal, Sig: int(ss)}
		}
		s.log.Debug("signal", "signal", unix.SignalName(ss), "request", m.T, "force", m.Force)
		if err := wire.Send(s.conn, m, nil); err != nil && !wire.IsClosed(err) {
			s.log.Warn("forwarding signal", "signal", unix.SignalName(ss), "err", err)
		}
	}
}

// takeTerminalBack makes the supervisor's process group the foreground of
// its terminal again, after an interactive app had it (see startApp).
func (s *supervisor) takeTerminalBack() {
	if !wire.IsTerminal(0) {
		return
	}
	// Asking from the background raises SIGTTOU, which would stop us;
	// no child is started after this, so ignoring it is harmless.
	signal.Ignore(unix.SIGTTOU)
	if err := unix.IoctlSetPointerInt(0, unix.TIOCSPGRP, unix.Getpgrp()); err != nil {
		s.log.Warn("taking the terminal back", "err", err)
		return
	}
	fg, _ := unix.IoctlGetInt(0, unix.TIOCGPGRP)
	s.log.Debug("took the terminal back", "foreground", fg)
}
