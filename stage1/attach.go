package stage1

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"

	"github.com/karman-project/karman/stage1/internal/wire"
	"github.com/karman-project/karman/stage1/poddir"
	"golang.org/x/sys/unix"
)

// AttachOptions are the streams of an attach session.
type AttachOptions struct {
	App string
	// Stdin is written to the app's stdin (an app of App.Stdin or
	// App.TTY; for others it is not read). With App.StdinOnce its end
	// closes the app's stdin (a terminal gets ^D).
	Stdin io.Reader
	// Stdout and Stderr get the app's output from now on (a terminal's
	// all goes to Stdout); nil: not wanted.
	Stdout, Stderr io.Writer
	// Resize carries a terminal's new sizes; a Stdin that is a terminal
	// is put in raw mode, and its SIGWINCH followed, for an app of
	// App.TTY.
	Resize <-chan TermSize
}

// Attach attaches to the stdio of the running app o.App of the pod in
// podDir, through the supervisor (poddir.AttachSocket): the app's output
// is copied to o.Stdout and o.Stderr as it comes, o.Stdin to the app's
// stdin. It returns nil when the app's output has ended (the app and
// whatever it left holding its output are gone) and ctx.Err() when ctx
// is done first; what still reads Stdin then is left to end with it.
func Attach(ctx context.Context, podDir string, o AttachOptions) error {
	conn, err := dialPod(podDir, poddir.AttachSocket, "attach socket")
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	b, _ := json.Marshal(wire.AttachHello{App: o.App, Stdin: o.Stdin != nil, Stdout: o.Stdout != nil, Stderr: o.Stderr != nil})
	if _, err := conn.Write(b); err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	buf := make([]byte, wire.AttachFrame+1)
	n, err := conn.Read(buf)
	if err != nil || n == 0 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("attach: the pod ended: %v", err)
	}
	var r wire.AttachReply
	if err := json.Unmarshal(buf[:n], &r); err != nil {
		return fmt.Errorf("attach: bad reply: %w", err)
	}
	if r.Error != "" {
		return fmt.Errorf("attach: %s", r.Error)
	}
	if !r.Stdin {
		o.Stdin = nil // nothing to write to
	}
	if r.TTY {
		if f := fileOf(o.Stdin); f != nil && wire.IsTerminal(int(f.Fd())) {
			if old, err := makeRaw(int(f.Fd())); err == nil {
				defer unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, old)
			}
			winch := make(chan os.Signal, 1)
			signal.Notify(winch, unix.SIGWINCH)
			defer signal.Stop(winch)
			winch <- unix.SIGWINCH // the size now
			go func() {
				for range winch {
					if rows, cols := winsize(f); rows > 0 {
						sendResize(conn, TermSize{rows, cols})
					}
				}
			}()
		}
		if o.Resize != nil {
			go func() {
				for s := range o.Resize {
					if sendResize(conn, s) != nil {
						return
					}
				}
			}()
		}
	}
	if o.Stdin != nil {
		go func() {
			in := make([]byte, wire.AttachFrame+1)
			for {
				n, err := o.Stdin.Read(in[1:])
				if n > 0 {
					in[0] = wire.AttachStdin
					if _, werr := conn.Write(in[:1+n]); werr != nil {
						return
					}
				}
				if err != nil {
					conn.Write([]byte{wire.AttachClose})
					return
				}
			}
		}()
	}
	for {
		n, err := conn.Read(buf)
		if err != nil || n == 0 {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return nil // the pod ended: its output with it
		}
		var w io.Writer
		switch buf[0] {
		case wire.AttachStdout:
			w = o.Stdout
		case wire.AttachStderr:
			w = o.Stderr
		case wire.AttachEnd:
			return nil
		}
		if w != nil {
			if _, err := w.Write(buf[1:n]); err != nil {
				return fmt.Errorf("attach: %w", err)
			}
		}
	}
}

func sendResize(conn *net.UnixConn, s TermSize) error {
	f := []byte{wire.AttachResize, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(f[1:3], s.Rows)
	binary.BigEndian.PutUint16(f[3:5], s.Cols)
	_, err := conn.Write(f)
	return err
}
