package stage1

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/karman-project/karman/stage1/internal/wire"
	"github.com/karman-project/karman/stage1/poddir"
	"golang.org/x/sys/unix"
)

// ErrNotRunning is returned (wrapped) by Enter and Stop for a pod that is
// not running.
var ErrNotRunning = errors.New("pod is not running")

// TermSize is a terminal's size in characters.
type TermSize struct {
	Rows, Cols uint16
}

// EnterOptions are the command Enter runs and its streams.
type EnterOptions struct {
	// App is the app whose root, user, groups, working directory and
	// isolation the command gets.
	App  string
	Args []string
	// Env is the command's environment; nil: the app's.
	Env []string
	// Stdin, Stdout and Stderr are the command's streams; nil means
	// /dev/null. An *os.File is handed to the command as it is (the two
	// share the file description); any other reader or writer is
	// relayed through a pipe: Enter returns once the command has ended
	// and its output has been copied, and what still reads Stdin then is
	// left to end with Stdin.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// TTY gives the command a new pseudo-terminal as its controlling
	// terminal, relayed to Stdin and Stdout; Stderr is not used. A Stdin
	// that is a terminal is put in raw mode for the while, and its window
	// size changes (SIGWINCH) are passed on.
	TTY bool
	// Resize, with TTY, carries the terminal's new sizes (a remote
	// client's); it may be nil. Enter stops reading it when it returns.
	Resize <-chan TermSize
}

// Enter runs o.Args inside app o.App of the running pod in podDir: in all
// the pod's namespaces, in the app's root, cgroup and isolation, with its
// working directory, user and groups, and its environment unless o.Env is
// set, as the init starts the app itself. It returns the command's exit
// status: 127 not found, 126 not executable, 128+N when killed by signal
// N. Cancelling ctx kills the command (and its process group) and returns
// ctx.Err().
func Enter(ctx context.Context, podDir string, o EnterOptions) (int, error) {
	if len(o.Args) == 0 {
		return 0, errors.New("enter: no command")
	}
	conn, err := dialCtl(podDir)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	req := &wire.CtlRequest{Op: "enter", App: o.App, Args: o.Args, Env: o.Env, TTY: o.TTY}
	var rights []byte
	var copies *stdioCopies
	if o.TTY {
		req.Rows, req.Cols = winsize(fileOf(o.Stdin), fileOf(o.Stdout))
	} else {
		files, c, err := commandStdio(o.Stdin, o.Stdout, o.Stderr)
		if err != nil {
			return 0, fmt.Errorf("enter: %w", err)
		}
		copies = c
		defer copies.abort()
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd()) // blocking mode: the command shares the file description
		}
		rights = unix.UnixRights(fds...)
	}
	b, _ := json.Marshal(req)
	_, _, err = conn.WriteMsgUnix(b, rights, nil)
	if copies != nil {
		copies.sent() // only the command holds its ends now
	}
	if err != nil {
		return 0, fmt.Errorf("enter: %w", err)
	}
	// Cancelled, the command is killed: the init sees our end of the
	// connection close for writing, kills it and closes its end once it
	// has reaped it, which ends the read below.
	stop := context.AfterFunc(ctx, func() {
		conn.CloseWrite()
		time.AfterFunc(cancelWait, func() { conn.Close() })
	})
	defer stop()
	var relay *ptyRelay
	defer func() {
		if relay != nil {
			relay.close()
		}
	}()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		var fds []int
		if err == nil && oobn > 0 {
			fds = wire.ParseRights(oob[:oobn])
		}
		if err != nil || n == 0 {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, fmt.Errorf("enter: the pod ended before the command did: %v", err)
		}
		var r wire.CtlReply
		if err := json.Unmarshal(buf[:n], &r); err != nil {
			wire.CloseAll(fds)
			return 0, fmt.Errorf("enter: bad reply: %w", err)
		}
		if o.TTY && relay == nil && len(fds) == 1 {
			relay = newPTYRelay(os.NewFile(uintptr(fds[0]), "pty"), o.Stdin, o.Stdout, o.Resize)
			fds = nil
		}
		wire.CloseAll(fds)
		if r.Error != "" {
			return 0, fmt.Errorf("enter: %s", r.Error)
		}
		if r.Done {
			if relay != nil {
				relay.wait(ctx)
			}
			if copies != nil {
				if err := copies.wait(ctx); err != nil {
					return 0, err
				}
			}
			return r.Code, nil
		}
	}
}

// cancelWait bounds how long a cancelled Enter waits for the init to
// have killed and reaped the command.
const cancelWait = 10 * time.Second

// fileOf returns the *os.File behind a stream, or nil.
func fileOf(s any) *os.File {
	if f, ok := s.(*os.File); ok && f != nil {
		return f
	}
	return nil
}

// stdioCopies are the relays of Enter's streams that are not files.
type stdioCopies struct {
	theirs []*os.File     // the command's ends of the pipes, until sent
	stdin  *os.File       // our end of the stdin pipe, or nil
	done   sync.WaitGroup // the output copies
	mine   []*os.File     // our ends of the output pipes
	once   sync.Once
}

// commandStdio returns the command's stdin, stdout and stderr: the files
// themselves, /dev/null for nil, or the ends of pipes that c relays.
func commandStdio(in io.Reader, out, errw io.Writer) (files []*os.File, c *stdioCopies, err error) {
	c = &stdioCopies{}
	defer func() {
		if err != nil {
			c.sent()
			c.abort()
		}
	}()
	files = make([]*os.File, 3)
	null := func() (*os.File, error) {
		f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err == nil {
			c.theirs = append(c.theirs, f)
		}
		return f, err
	}
	switch {
	case in == nil:
		if files[0], err = null(); err != nil {
			return nil, nil, err
		}
	case fileOf(in) != nil:
		files[0] = fileOf(in)
	default:
		r, w, err := os.Pipe()
		if err != nil {
			return nil, nil, err
		}
		files[0], c.stdin = r, w
		c.theirs = append(c.theirs, r)
		go func() {
			io.Copy(w, in)
			w.Close() // EOF for the command
		}()
	}
	for i, wr := range []io.Writer{out, errw} {
		switch {
		case wr == nil:
			if files[1+i], err = null(); err != nil {
				return nil, nil, err
			}
		case fileOf(wr) != nil:
			files[1+i] = fileOf(wr)
		default:
			r, w, err := os.Pipe()
			if err != nil {
				return nil, nil, err
			}
			files[1+i] = w
			c.theirs = append(c.theirs, w)
			c.mine = append(c.mine, r)
			c.done.Add(1)
			go func() {
				defer c.done.Done()
				if _, err := io.Copy(wr, r); err != nil {
					io.Copy(io.Discard, r) // a failing writer must not block the command on a full pipe
				}
				r.Close()
			}()
		}
	}
	return files, c, nil
}

// sent closes the command's ends of the pipes once the init has them.
func (c *stdioCopies) sent() {
	for _, f := range c.theirs {
		f.Close()
	}
	c.theirs = nil
}

// wait waits until the command's output (and that of whatever it left
// holding it) has been copied, or ctx is done.
func (c *stdioCopies) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		c.done.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// abort ends the relays: the stdin pipe closes, the output copies see
// EOF or an error once their reads end.
func (c *stdioCopies) abort() {
	c.once.Do(func() {
		if c.stdin != nil {
			c.stdin.Close()
		}
		for _, r := range c.mine {
			r.Close()
		}
	})
}

// dialCtl connects to the pod's control socket.
func dialCtl(podDir string) (*net.UnixConn, error) {
	return dialPod(podDir, poddir.CtlSocket, "pod control socket")
}

// dialPod connects to the socket name of the pod in podDir (what names
// it in errors); a pod that is gone is ErrNotRunning.
func dialPod(podDir, name, what string) (*net.UnixConn, error) {
	var c *net.UnixConn
	err := wire.WithSocketPath(filepath.Join(podDir, name), func(p string) error {
		var err error
		c, err = net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: p, Net: "unixpacket"})
		return err
	})
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ECONNREFUSED) {
			return nil, fmt.Errorf("%w (%s: %v)", ErrNotRunning, podDir, err)
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return c, nil
}
