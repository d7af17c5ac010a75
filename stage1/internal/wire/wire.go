package wire

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/karman-project/karman/stage1/poddir"
	"golang.org/x/sys/unix"
)

// The supervisor and the init talk over a SOCK_SEQPACKET socket pair (the
// init's end is its fd 3): one JSON message per packet, in both directions.
// A packet socket keeps message boundaries, carries SCM_CREDENTIALS (the
// kernel translates an app's PID from the pod's PID namespace into the
// supervisor's) and sees EOF when the other side dies.

// Message types.
const (
	MsgBoot    = "boot"    // supervisor -> init, first message
	MsgCgroups = "cgroups" // supervisor -> init, second: each app's cgroup task files
	MsgFDs     = "fds"     // supervisor -> init: the descriptors of the message before that did not fit in it (sendWithFDs)
	MsgStop    = "stop"    // supervisor -> init: stop the pod (Force: at once)
	MsgSignal  = "signal"  // supervisor -> init: forward Sig to the apps
	MsgLog     = "log"     // init -> supervisor: a log record
	MsgError   = "error"   // init -> supervisor: the init failed (Msg), exit 254
	MsgStarted = "started" // init -> supervisor: app App runs (creds: host PID)
	MsgExited  = "exited"  // init -> supervisor: app App ended
	MsgReady   = "ready"   // init -> supervisor: every app was started
	MsgExit    = "exit"    // init -> supervisor: the pod's exit status Code
	// MsgPipes, init -> supervisor: App is about to start again, or for
	// the first time after it was added to the running pod: make its
	// output pipes and their copies to its log. The supervisor replies
	// with MsgPipes carrying the write ends of its stdout and stderr,
	// and with Stdin the read end of its stdin pipe after them. With TTY
	// the request carries the master of the app's pseudo-terminal, which
	// the supervisor relays instead, and the reply carries nothing.
	MsgPipes   = "pipes"
	MsgRemoved = "removed" // init -> supervisor: app App was removed from the pod
)

// initSockFD is the init's end of the supervisor socket. The boot
// message carries the write ends of each app's stdout and stderr pipes, in
// pod order, as SCM_RIGHTS.
const InitSockFD = 3

// maxPacket bounds a packet; senders truncate log text well below it.
// The receive buffers live as long as the pod, in the supervisor and in
// the init: they are part of what every running pod costs.
const MaxPacket = 16 << 10

// message is one packet between the supervisor and the init. Which fields
// are set depends on T.
type Message struct {
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
	App  string    `json:"app,omitempty"`
	PID  int       `json:"pid,omitempty"` // in the pod's PID namespace
	Time time.Time `json:"time,omitzero"`
	Code int       `json:"code,omitempty"`
	// Restarts (started): how many times the app was started before.
	Restarts int    `json:"restarts,omitempty"`
	Signal   string `json:"signal,omitempty"`
	Reason   string `json:"reason,omitempty"`

	// pipes: the app's stdio (poddir.App's fields of the same names)
	Stdin     bool `json:"stdin,omitempty"`
	StdinOnce bool `json:"stdinOnce,omitempty"`
	TTY       bool `json:"tty,omitempty"`

	// stop, signal
	Force bool `json:"force,omitempty"`
	Sig   int  `json:"sig,omitempty"`
}

// maxFDs is how many descriptors the kernel passes in one packet
// (SCM_MAX_FD).
const MaxFDs = 253

// sendWithFDs sends m with fds as SCM_RIGHTS: the first maxFDs with m, the
// rest in msgFDs packets right after it, maxFDs at a time. The receiver
// knows how many to expect (recvMoreFDs): a pod of many apps has more
// output pipes and cgroup files than one packet carries.
func SendWithFDs(c PacketWriter, m *Message, fds []int) error {
	for first := true; first || len(fds) > 0; first = false {
		n := min(len(fds), MaxFDs)
		var rights []byte
		if n > 0 {
			rights = unix.UnixRights(fds[:n]...)
		}
		if !first {
			m = &Message{T: MsgFDs}
		}
		if err := Send(c, m, rights); err != nil {
			return err
		}
		fds = fds[n:]
	}
	return nil
}

// recvMoreFDs reads the msgFDs packets that follow a message whose
// descriptors, fds, are fewer than the want it should have carried, and
// returns them all. On error it closes them.
func RecvMoreFDs(c *net.UnixConn, fds []int, want int) ([]int, error) {
	var buf, oob []byte
	for len(fds) < want {
		if buf == nil { // not on the common path: one packet held them all
			buf, oob = make([]byte, MaxPacket), make([]byte, unix.CmsgSpace(MaxFDs*4))
		}
		m, _, more, err := Recv(c, buf, oob)
		fds = append(fds, more...)
		if err == nil && m.T != MsgFDs {
			err = fmt.Errorf("a %s message instead of the rest of the descriptors", m.T)
		}
		if err != nil {
			CloseAll(fds)
			return nil, fmt.Errorf("%d descriptors of %d: %w", len(fds), want, err)
		}
	}
	if len(fds) > want {
		CloseAll(fds)
		return nil, fmt.Errorf("%d descriptors, want %d", len(fds), want)
	}
	return fds, nil
}

// packetWriter is where sendMsg writes: the supervisor's or the init's
// *net.UnixConn.
type PacketWriter interface {
	WriteMsgUnix(b, oob []byte, addr *net.UnixAddr) (n, oobn int, err error)
}

// sendMsg writes m as one packet, with optional ancillary data.
func Send(c PacketWriter, m *Message, oob []byte) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > MaxPacket {
		return fmt.Errorf("send %s: %d bytes, more than the %d a packet holds", m.T, len(b), MaxPacket)
	}
	if _, _, err := c.WriteMsgUnix(b, oob, nil); err != nil {
		return fmt.Errorf("send %s: %w", m.T, err)
	}
	return nil
}

// recvMsg reads one packet. creds is the sender-supplied (kernel
// translated) PID when the socket has SO_PASSCRED, else 0; fds are the
// descriptors it carried (close-on-exec), which the caller owns.
func Recv(c *net.UnixConn, buf, oob []byte) (m Message, creds int, fds []int, err error) {
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
		err = ErrEOF
	case flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0:
		err = errors.New("truncated packet")
	default:
		if err = json.Unmarshal(buf[:n], &m); err != nil {
			err = fmt.Errorf("bad packet: %w", err)
		}
	}
	if err != nil {
		CloseAll(fds)
		return m, creds, nil, err
	}
	return m, creds, fds, nil
}

// errEOF is an empty packet: a SEQPACKET peer closed its end.
var ErrEOF = errors.New("peer closed the connection")

// isClosed tells whether err means the peer is gone.
func IsClosed(err error) bool {
	return errors.Is(err, ErrEOF) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, unix.ECONNRESET) ||
		errors.Is(err, unix.EPIPE) || errors.Is(err, os.ErrClosed)
}

// socketPair returns a connected SEQPACKET pair as a *net.UnixConn (this
// side) and an *os.File (the other side, to pass to a child).
func SocketPair() (*net.UnixConn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "stage1-sock")
	c, err := FileConn(mine)
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	return c, os.NewFile(uintptr(fds[1]), "stage1-sock"), nil
}

// fileConn turns a unix socket file into a *net.UnixConn and closes f.
func FileConn(f *os.File) (*net.UnixConn, error) {
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
type SockHandler struct {
	c     *net.UnixConn
	level slog.Level
	attrs []string
	group string
}

func (h *SockHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *SockHandler) Handle(_ context.Context, r slog.Record) error {
	m := &Message{T: MsgLog, Level: r.Level, Msg: Truncate(r.Message), Attrs: append([]string(nil), h.attrs...)}
	r.Attrs(func(a slog.Attr) bool {
		m.Attrs = append(m.Attrs, h.key(a.Key), Truncate(a.Value.String()))
		return true
	})
	return Send(h.c, m, nil)
}

func (h *SockHandler) key(k string) string {
	if h.group != "" {
		return h.group + "." + k
	}
	return k
}

func (h *SockHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append([]string(nil), h.attrs...)
	for _, a := range as {
		n.attrs = append(n.attrs, h.key(a.Key), Truncate(a.Value.String()))
	}
	return &n
}

func (h *SockHandler) WithGroup(g string) slog.Handler {
	n := *h
	n.group = h.key(g)
	return &n
}

func Truncate(s string) string {
	const max = 1 << 10
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// attrsAny turns key/value strings back into slog arguments.
func AttrsAny(kv []string) []any {
	out := make([]any, 0, len(kv))
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, slog.String(kv[i], kv[i+1]))
	}
	return out
}

// The control socket (CtlSocket) is served by the pod init, which is in
// every namespace of the pod and sees the apps' roots. A client sends one
// request per connection, as one SOCK_SEQPACKET packet; an enter request
// carries the caller's stdin, stdout and stderr as SCM_RIGHTS. The init
// replies with ctlReply packets: {pid} once the command runs, then
// {done, code}. Closing the connection kills the command.

// CtlRequest is a request on the control socket.
type CtlRequest struct {
	// Op is "enter", "stop", or one of the app requests: "app-add" (Spec,
	// with the descriptors: the app's root as a detached mount, then one
	// detached clone per volume, then its Tasks cgroup files),
	// "app-start", "app-stop" (Timeout, Force), "app-rm" (Force).
	Op    string   `json:"op"`
	App   string   `json:"app,omitempty"`
	Args  []string `json:"args,omitempty"`
	Env   []string `json:"env,omitempty"` // nil: the app's
	TTY   bool     `json:"tty,omitempty"`
	Rows  uint16   `json:"rows,omitempty"` // the pty's window size
	Cols  uint16   `json:"cols,omitempty"`
	Force bool     `json:"force,omitempty"`

	Spec     *poddir.App   `json:"spec,omitempty"`
	Tasks    int           `json:"tasks,omitempty"`
	CgroupV2 bool          `json:"cgroupV2,omitempty"`
	Timeout  time.Duration `json:"timeout,omitempty"`
}

// CtlReply is a reply on the control socket.
type CtlReply struct {
	PID   int    `json:"pid,omitempty"`
	Done  bool   `json:"done,omitempty"`
	Code  int    `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
}

// CloseAll closes the descriptors fds.
func CloseAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// WithSocketPath calls f with a name for the unix socket path that fits
// in sun_path (108 bytes): long paths are reached through
// /proc/self/fd/N of their directory. Abstract names are passed as they are.
func WithSocketPath(path string, f func(string) error) error {
	if len(path) < 100 || strings.HasPrefix(path, "@") {
		return f(path)
	}
	dfd, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	return f(fmt.Sprintf("/proc/self/fd/%d/%s", dfd, filepath.Base(path)))
}

// ParseRights returns the descriptors that the control message oob carries.
func ParseRights(oob []byte) []int {
	var fds []int
	if cmsgs, err := unix.ParseSocketControlMessage(oob); err == nil {
		for _, cm := range cmsgs {
			if rights, err := unix.ParseUnixRights(&cm); err == nil {
				fds = append(fds, rights...)
			}
		}
	}
	return fds
}

// NewSockHandler returns the init's slog.Handler: it sends records at
// level and above to the supervisor over c.
func NewSockHandler(c *net.UnixConn, level slog.Level) *SockHandler {
	return &SockHandler{c: c, level: level}
}

// IsTerminal tells whether fd is a terminal.
func IsTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}
