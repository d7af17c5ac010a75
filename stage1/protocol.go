package stage1

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// The supervisor and the init talk over a SOCK_SEQPACKET socket pair (the
// init's end is its fd 3): one JSON message per packet, in both directions.
// A packet socket keeps message boundaries, carries SCM_CREDENTIALS (the
// kernel translates an app's PID from the pod's PID namespace into the
// supervisor's) and sees EOF when the other side dies.

// Message types.
const (
	msgBoot    = "boot"    // supervisor -> init, first message
	msgCgroups = "cgroups" // supervisor -> init, second: each app's cgroup task files
	msgFDs     = "fds"     // supervisor -> init: the descriptors of the message before that did not fit in it (sendWithFDs)
	msgStop    = "stop"    // supervisor -> init: stop the pod (Force: at once)
	msgSignal  = "signal"  // supervisor -> init: forward Sig to the apps
	msgLog     = "log"     // init -> supervisor: a log record
	msgError   = "error"   // init -> supervisor: the init failed (Msg), exit 254
	msgStarted = "started" // init -> supervisor: app App runs (creds: host PID)
	msgExited  = "exited"  // init -> supervisor: app App ended
	msgReady   = "ready"   // init -> supervisor: every app was started
	msgExit    = "exit"    // init -> supervisor: the pod's exit status Code
)

// initSockFD is the init's end of the supervisor socket. The boot
// message carries the write ends of each app's stdout and stderr pipes, in
// pod order, as SCM_RIGHTS.
const initSockFD = 3

// maxPacket bounds a packet; senders truncate log text well below it.
// The receive buffers live as long as the pod, in the supervisor and in
// the init: they are part of what every running pod costs.
const maxPacket = 16 << 10

// message is one packet between the supervisor and the init. Which fields
// are set depends on T.
type message struct {
	T string `json:"t"`

	// boot
	PodDir string `json:"podDir,omitempty"`
	Debug  bool   `json:"debug,omitempty"`
	Notify bool   `json:"notify,omitempty"` // NotifySocket relay exists
	Tasks  []int  `json:"tasks,omitempty"`  // cgroups: how many task files each app has
	// CgroupV2: each app has one descriptor, its cgroup2 directory, to
	// start it in with clone3 (CLONE_INTO_CGROUP), instead of task files.
	CgroupV2 bool `json:"cgroupV2,omitempty"`

	// log, error
	Level slog.Level `json:"level,omitempty"`
	Msg   string     `json:"msg,omitempty"`
	Attrs []string   `json:"attrs,omitempty"` // key, value, key, value...

	// started, exited, exit
	App    string    `json:"app,omitempty"`
	PID    int       `json:"pid,omitempty"` // in the pod's PID namespace
	Time   time.Time `json:"time,omitzero"`
	Code   int       `json:"code,omitempty"`
	Signal string    `json:"signal,omitempty"`
	Reason string    `json:"reason,omitempty"`

	// stop, signal
	Force bool `json:"force,omitempty"`
	Sig   int  `json:"sig,omitempty"`
}

// maxFDs is how many descriptors the kernel passes in one packet
// (SCM_MAX_FD).
const maxFDs = 253

// sendWithFDs sends m with fds as SCM_RIGHTS: the first maxFDs with m, the
// rest in msgFDs packets right after it, maxFDs at a time. The receiver
// knows how many to expect (recvMoreFDs): a pod of many apps has more
// output pipes and cgroup files than one packet carries.
func sendWithFDs(c packetWriter, m *message, fds []int) error {
	for first := true; first || len(fds) > 0; first = false {
		n := min(len(fds), maxFDs)
		var rights []byte
		if n > 0 {
			rights = unix.UnixRights(fds[:n]...)
		}
		if !first {
			m = &message{T: msgFDs}
		}
		if err := sendMsg(c, m, rights); err != nil {
			return err
		}
		fds = fds[n:]
	}
	return nil
}

// recvMoreFDs reads the msgFDs packets that follow a message whose
// descriptors, fds, are fewer than the want it should have carried, and
// returns them all. On error it closes them.
func recvMoreFDs(c *net.UnixConn, fds []int, want int) ([]int, error) {
	var buf, oob []byte
	for len(fds) < want {
		if buf == nil { // not on the common path: one packet held them all
			buf, oob = make([]byte, maxPacket), make([]byte, unix.CmsgSpace(maxFDs*4))
		}
		m, _, more, err := recvMsg(c, buf, oob)
		fds = append(fds, more...)
		if err == nil && m.T != msgFDs {
			err = fmt.Errorf("a %s message instead of the rest of the descriptors", m.T)
		}
		if err != nil {
			closeAll(fds)
			return nil, fmt.Errorf("%d descriptors of %d: %w", len(fds), want, err)
		}
	}
	if len(fds) > want {
		closeAll(fds)
		return nil, fmt.Errorf("%d descriptors, want %d", len(fds), want)
	}
	return fds, nil
}

// packetWriter is where sendMsg writes: the supervisor's or the init's
// *net.UnixConn.
type packetWriter interface {
	WriteMsgUnix(b, oob []byte, addr *net.UnixAddr) (n, oobn int, err error)
}

// sendMsg writes m as one packet, with optional ancillary data.
func sendMsg(c packetWriter, m *message, oob []byte) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > maxPacket {
		return fmt.Errorf("send %s: %d bytes, more than the %d a packet holds", m.T, len(b), maxPacket)
	}
	if _, _, err := c.WriteMsgUnix(b, oob, nil); err != nil {
		return fmt.Errorf("send %s: %w", m.T, err)
	}
	return nil
}

// recvMsg reads one packet. creds is the sender-supplied (kernel
// translated) PID when the socket has SO_PASSCRED, else 0; fds are the
// descriptors it carried (close-on-exec), which the caller owns.
func recvMsg(c *net.UnixConn, buf, oob []byte) (m message, creds int, fds []int, err error) {
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if errors.Is(err, unix.ECONNRESET) {
		// The peer closed with messages of ours unread: the kernel says
		// so first, once, and still delivers what the peer sent before
		// (an init's last error, say).
		n, oobn, flags, _, err = c.ReadMsgUnix(buf, oob)
	}
	if err != nil {
		return m, 0, nil, err
	}
	if oobn > 0 {
		if cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, cm := range cmsgs {
				if uc, err := unix.ParseUnixCredentials(&cm); err == nil {
					creds = int(uc.Pid)
				} else if rights, err := unix.ParseUnixRights(&cm); err == nil {
					fds = append(fds, rights...)
				}
			}
		}
	}
	switch {
	case n == 0:
		err = errEOF
	case flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0:
		err = errors.New("truncated packet")
	default:
		if err = json.Unmarshal(buf[:n], &m); err != nil {
			err = fmt.Errorf("bad packet: %w", err)
		}
	}
	if err != nil {
		closeAll(fds)
		return m, creds, nil, err
	}
	return m, creds, fds, nil
}

// errEOF is an empty packet: a SEQPACKET peer closed its end.
var errEOF = errors.New("peer closed the connection")

// isClosed tells whether err means the peer is gone.
func isClosed(err error) bool {
	return errors.Is(err, errEOF) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, unix.ECONNRESET) ||
		errors.Is(err, unix.EPIPE) || errors.Is(err, os.ErrClosed)
}

// socketPair returns a connected SEQPACKET pair as a *net.UnixConn (this
// side) and an *os.File (the other side, to pass to a child).
func socketPair() (*net.UnixConn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "stage1-sock")
	c, err := fileConn(mine)
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	return c, os.NewFile(uintptr(fds[1]), "stage1-sock"), nil
}

// fileConn turns a unix socket file into a *net.UnixConn and closes f.
func fileConn(f *os.File) (*net.UnixConn, error) {
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("fd %d is not a unix socket", f.Fd())
	}
	return uc, nil
}

// sockHandler is the init's slog.Handler: it ships records to the
// supervisor, which logs them with its own handler.
type sockHandler struct {
	c     *net.UnixConn
	level slog.Level
	attrs []string
	group string
}

func (h *sockHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *sockHandler) Handle(_ context.Context, r slog.Record) error {
	m := &message{T: msgLog, Level: r.Level, Msg: truncate(r.Message), Attrs: append([]string(nil), h.attrs...)}
	r.Attrs(func(a slog.Attr) bool {
		m.Attrs = append(m.Attrs, h.key(a.Key), truncate(a.Value.String()))
		return true
	})
	return sendMsg(h.c, m, nil)
}

func (h *sockHandler) key(k string) string {
	if h.group != "" {
		return h.group + "." + k
	}
	return k
}

func (h *sockHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append([]string(nil), h.attrs...)
	for _, a := range as {
		n.attrs = append(n.attrs, h.key(a.Key), truncate(a.Value.String()))
	}
	return &n
}

func (h *sockHandler) WithGroup(g string) slog.Handler {
	n := *h
	n.group = h.key(g)
	return &n
}

func truncate(s string) string {
	const max = 1 << 10
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// attrsAny turns key/value strings back into slog arguments.
func attrsAny(kv []string) []any {
	out := make([]any, 0, len(kv))
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, slog.String(kv[i], kv[i+1]))
	}
	return out
}
