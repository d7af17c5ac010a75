package supervisor

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/karman-project/karman/stage1/internal/wire"
	"github.com/karman-project/karman/stage1/poddir"
	"golang.org/x/sys/unix"
)

// appIO is what the supervisor holds of an app's stdio for attach
// sessions (wire's attach protocol): the clients its output copies fan
// out to, and where their input goes.
type appIO struct {
	mu      sync.Mutex
	running bool     // its output is being copied
	tty     bool     // its stdio is a terminal, master
	stdin   *os.File // the write end of its stdin pipe, or the master; nil: none, or closed
	master  *os.File
	once    bool // App.StdinOnce
	run     int  // counts begin: an end of an earlier run's output changes nothing
	clients map[*attachClient]struct{}
	// drained closes when the run's output has been copied to its log
	// and sessions (end).
	drained chan struct{}
}

// attachClient is one attach session.
type attachClient struct {
	conn           *net.UnixConn
	stdout, stderr bool
	frames         chan []byte // to send; closed when the session ends
	closeOnce      sync.Once
}

// attachQueue is how many frames a session may lag behind the app's
// output before it is dropped (the log keeps everything).
const attachQueue = 64

// appIOOf returns app's appIO, made on first use.
func (s *supervisor) appIOOf(app string) *appIO {
	s.iosMu.Lock()
	defer s.iosMu.Unlock()
	if s.ios == nil {
		s.ios = map[string]*appIO{}
	}
	io := s.ios[app]
	if io == nil {
		io = &appIO{clients: map[*attachClient]struct{}{}}
		s.ios[app] = io
	}
	return io
}

// begin marks a run of the app whose output is copied from now on:
// stdin (or nil) is where sessions write, master its terminal (or nil).
// It returns the run, for end.
func (io *appIO) begin(stdin, master *os.File, once bool) int {
	io.mu.Lock()
	defer io.mu.Unlock()
	io.running, io.stdin, io.master, io.tty, io.once = true, stdin, master, master != nil, once
	io.run++
	io.drained = make(chan struct{})
	return io.run
}

// waitDrained waits, at most d, until the current run's output has been
// copied: an app's exit is recorded once its log holds all it wrote, as
// the CRI expects of a container's log when it reports its exit. Only
// a process the app left holding its output makes this wait out d.
func (io *appIO) waitDrained(d time.Duration) {
	io.mu.Lock()
	c := io.drained
	io.mu.Unlock()
	if c == nil {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c:
	case <-t.C:
	}
}

// end is the end of run's output: the sessions end, stdin closes.
func (io *appIO) end(run int) {
	io.mu.Lock()
	defer io.mu.Unlock()
	if run != io.run {
		return
	}
	io.running = false
	close(io.drained)
	if io.stdin != nil && io.stdin != io.master {
		io.stdin.Close()
	}
	io.stdin, io.master = nil, nil
	for c := range io.clients {
		c.finish(true)
		delete(io.clients, c)
	}
}

// fanOut sends data of stream (AttachStdout or AttachStderr) to the
// sessions that want it; a session whose queue is full is dropped.
func (io *appIO) fanOut(stream byte, data []byte) {
	io.mu.Lock()
	defer io.mu.Unlock()
	if len(io.clients) == 0 {
		return
	}
	var frame []byte
	for c := range io.clients {
		if stream == wire.AttachStdout && !c.stdout || stream == wire.AttachStderr && !c.stderr {
			continue
		}
		if frame == nil {
			frame = append([]byte{stream}, data...)
		}
		select {
		case c.frames <- frame:
		default:
			c.finish(false)
			delete(io.clients, c)
		}
	}
}

// closeStdin closes the app's stdin (StdinOnce), or sends a terminal
// its end-of-file character.
func (io *appIO) closeStdin() {
	io.mu.Lock()
	defer io.mu.Unlock()
	switch {
	case io.stdin == nil:
	case io.stdin == io.master:
		io.master.Write([]byte{4}) // ^D
	default:
		io.stdin.Close()
		io.stdin = nil
	}
}

// finish ends the session's sending, with AttachEnd when the app's
// output ended. The caller holds the appIO's lock.
func (c *attachClient) finish(end bool) {
	c.closeOnce.Do(func() {
		if end {
			select {
			case c.frames <- []byte{wire.AttachEnd}:
			default:
			}
		}
		close(c.frames)
	})
}

// listenAttach binds the pod's attach socket and serves it until the pod
// ends.
func (s *supervisor) listenAttach() error {
	path := s.path(poddir.AttachSocket)
	var ln *net.UnixListener
	err := wire.WithSocketPath(path, func(p string) error {
		var err error
		ln, err = net.ListenUnix("unixpacket", &net.UnixAddr{Name: p, Net: "unixpacket"})
		return err
	})
	if err != nil {
		return fmt.Errorf("attach socket: %w", err)
	}
	ln.SetUnlinkOnClose(false) // finish removes it
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("attach socket: %w", err)
	}
	s.attachLn = ln
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					s.log.Warn("attach socket", "err", err)
				}
				return
			}
			go s.attachSession(c)
		}
	}()
	return nil
}

// attachSession serves one attach connection.
func (s *supervisor) attachSession(conn *net.UnixConn) {
	defer conn.Close()
	buf := make([]byte, wire.AttachFrame+1)
	n, err := conn.Read(buf)
	if err != nil {
		return
	}
	reply := func(r wire.AttachReply) error {
		b, _ := json.Marshal(r)
		_, err := conn.Write(b)
		return err
	}
	var h wire.AttachHello
	if err := json.Unmarshal(buf[:n], &h); err != nil || !poddir.ValidAppName(h.App) {
		reply(wire.AttachReply{Error: "bad attach request"})
		return
	}
	s.iosMu.Lock()
	io := s.ios[h.App]
	s.iosMu.Unlock()
	if io == nil {
		reply(wire.AttachReply{Error: fmt.Sprintf("app %s is not running", h.App)})
		return
	}
	c := &attachClient{conn: conn, stdout: h.Stdout, stderr: h.Stderr, frames: make(chan []byte, attachQueue)}
	io.mu.Lock()
	if !io.running {
		io.mu.Unlock()
		reply(wire.AttachReply{Error: fmt.Sprintf("app %s is not running", h.App)})
		return
	}
	hasStdin, tty, once := io.stdin != nil, io.tty, io.once
	if err := reply(wire.AttachReply{TTY: tty, Stdin: hasStdin}); err != nil {
		io.mu.Unlock()
		return
	}
	io.clients[c] = struct{}{}
	io.mu.Unlock()
	s.log.Debug("attach session", "app", h.App, "stdin", h.Stdin && hasStdin, "tty", tty)

	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for f := range c.frames {
			if _, err := conn.Write(f); err != nil {
				break
			}
		}
		conn.Close() // the client sees EOF; the reads below end
	}()
	stdinEnded := false
	for {
		n, err := conn.Read(buf)
		if err != nil || n == 0 {
			break
		}
		switch buf[0] {
		case wire.AttachStdin:
			if !h.Stdin {
				continue
			}
			io.mu.Lock()
			w := io.stdin
			io.mu.Unlock()
			if w != nil {
				w.Write(buf[1:n]) // blocks while the app does not read: the client waits
			}
		case wire.AttachResize:
			if n == 5 {
				rows, cols := binary.BigEndian.Uint16(buf[1:3]), binary.BigEndian.Uint16(buf[3:5])
				io.mu.Lock()
				m := io.master
				io.mu.Unlock()
				if m != nil && rows > 0 && cols > 0 {
					if rc, err := m.SyscallConn(); err == nil { // not Fd(): that would make it blocking
						rc.Control(func(fd uintptr) {
							unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
						})
					}
				}
			}
		case wire.AttachClose:
			if h.Stdin && once && !stdinEnded {
				io.closeStdin()
			}
			stdinEnded = true
		}
	}
	if h.Stdin && once && !stdinEnded {
		io.closeStdin() // the session ended, and its stdin with it
	}
	io.mu.Lock()
	if _, ok := io.clients[c]; ok {
		c.finish(false)
		delete(io.clients, c)
	}
	io.mu.Unlock()
	<-sent
}
