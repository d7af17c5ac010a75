package stage1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"

	"github.com/karman-project/karman/stage1/internal/wire"
	"golang.org/x/sys/unix"
)

// winsize is the size of the first terminal among files, or 0, 0.
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
	restore func()
	winch   chan os.Signal
	done    chan struct{} // closes when the relay ends: stops the resize loop
	copied  chan struct{}
	once    sync.Once
}

// newPTYRelay starts relaying: in (put in raw mode if it is a terminal)
// to the master, the master to out until it reads EIO, which is when the
// command and everything that inherited the slave are gone; window size
// changes follow SIGWINCH when in or out is a terminal, and resize.
func newPTYRelay(master *os.File, in io.Reader, out io.Writer, resize <-chan TermSize) *ptyRelay {
	r := &ptyRelay{master: master, restore: func() {}, done: make(chan struct{}), copied: make(chan struct{})}
	inf, outf := fileOf(in), fileOf(out)
	if inf != nil && wire.IsTerminal(int(inf.Fd())) {
		if old, err := makeRaw(int(inf.Fd())); err == nil {
			r.restore = func() { unix.IoctlSetTermios(int(inf.Fd()), unix.TCSETS, old) }
		}
	}
	setSize := func(s TermSize) {
		if s.Rows > 0 && s.Cols > 0 {
			control(master, func(fd int) error {
				return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: s.Rows, Col: s.Cols})
			})
		}
	}
	if inf != nil && wire.IsTerminal(int(inf.Fd())) || outf != nil && wire.IsTerminal(int(outf.Fd())) {
		r.winch = make(chan os.Signal, 1)
		signal.Notify(r.winch, unix.SIGWINCH)
	}
	go func() {
		for {
			select {
			case <-r.winch: // nil without a terminal: never ready
				rows, cols := winsize(inf, outf)
				setSize(TermSize{rows, cols})
			case s, ok := <-resize:
				if !ok {
					resize = nil
					continue
				}
				setSize(s)
			case <-r.done:
				return
			}
		}
	}()
	if in != nil {
		// This copy may stay blocked in a read of in until its next
		// input; it ends with in (a caller's process, a client's stream).
		go io.Copy(master, in)
	}
	go func() {
		w := out
		if w == nil {
			w = io.Discard
		}
		_, err := io.Copy(w, master)
		if err != nil && !errors.Is(err, unix.EIO) && outf != nil {
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
	r.once.Do(func() {
		if r.winch != nil {
			signal.Stop(r.winch)
		}
		close(r.done)
		r.restore()
		r.master.Close()
	})
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
