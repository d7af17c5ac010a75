package stage1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/karman-project/karman/stage1/internal/wire"
	"golang.org/x/sys/unix"
)

// winsize is the caller's terminal size, or 0, 0.
func winsize(files ...*os.File) (rows, cols uint16) {
	for _, f := range files {
		if f == nil {
			continue
		}
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil {
			return ws.Row, ws.Col
		}
	}
	return 0, 0
}

// ptyRelay copies between Enter's caller and the master of the command's
// pseudo-terminal.
type ptyRelay struct {
	master  *os.File
	in, out *os.File
	restore func()
	winch   chan os.Signal
	copied  chan struct{}
}

// newPTYRelay starts relaying: stdin (put in raw mode if it is a
// terminal) to the master, the master to stdout until it reads EIO, which
// is when the command and everything that inherited the slave are gone;
// window size changes follow SIGWINCH.
func newPTYRelay(master, in, out *os.File) *ptyRelay {
	r := &ptyRelay{master: master, in: in, out: out, restore: func() {}, copied: make(chan struct{})}
	if in != nil && wire.IsTerminal(int(in.Fd())) {
		if old, err := makeRaw(int(in.Fd())); err == nil {
			r.restore = func() { unix.IoctlSetTermios(int(in.Fd()), unix.TCSETS, old) }
		}
	}
	r.winch = make(chan os.Signal, 1)
	signal.Notify(r.winch, unix.SIGWINCH)
	go func() {
		for range r.winch {
			if rows, cols := winsize(in, out); rows > 0 {
				control(master, func(fd int) error {
					return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
				})
			}
		}
	}()
	if in != nil {
		// This copy may stay blocked in a read of stdin until the next
		// input; it ends with the caller's process.
		go io.Copy(master, in)
	}
	go func() {
		var w io.Writer = io.Discard
		if out != nil {
			w = out
		}
		_, err := io.Copy(w, master)
		if err != nil && !errors.Is(err, unix.EIO) {
			fmt.Fprintln(os.Stderr, "karman: enter:", err)
		}
		close(r.copied)
	}()
	return r
}

// wait waits for the command's output to be relayed.
func (r *ptyRelay) wait(ctx context.Context) {
	select {
	case <-r.copied:
	case <-ctx.Done():
	}
}

func (r *ptyRelay) close() {
	signal.Stop(r.winch)
	close(r.winch)
	r.restore()
	r.master.Close()
}

// control runs f on f's descriptor without putting it in blocking mode.
func control(file *os.File, f func(fd int) error) error {
	rc, err := file.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// makeRaw puts terminal fd in raw mode (cfmakeraw) and returns the old
// settings.
func makeRaw(fd int) (*unix.Termios, error) {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	old := *t
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return nil, err
	}
	return &old, nil
}
