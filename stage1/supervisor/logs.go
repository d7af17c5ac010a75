package supervisor

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/karman-project/karman/stage1/internal/wire"
	"github.com/karman-project/karman/stage1/poddir"
	"golang.org/x/sys/unix"
)

// logPipes makes the pipes of the apps' stdout and stderr, in the pod's
// order (app 1 stdout, app 1 stderr, app 2 stdout...): the read ends for
// the supervisor's tees (startTees), the write ends for the init. An
// interactive pod has none: its app has the terminal.
func (s *supervisor) logPipes() (rs, ws []*os.File, err error) {
	if s.pod.Interactive {
		return nil, nil, nil
	}
	for _, a := range s.pod.Apps {
		for range 2 {
			r, w, err := os.Pipe()
			if err != nil {
				closeFiles(rs)
				closeFiles(ws)
				return nil, nil, fmt.Errorf("app %s output: %w", a.Name, err)
			}
			rs, ws = append(rs, r), append(ws, w)
		}
	}
	return rs, ws, nil
}

// startTees opens <pod>/logs/<app>.log for each app and starts, for the
// read ends of its stdout and stderr pipes (rs, as logPipes orders them),
// a goroutine that copies it to both
// the supervisor's own stdout or stderr and the log file, chunk by chunk,
// so that each stream keeps its order. It takes rs over, and closes them
// on failure.
func (s *supervisor) startTees(rs []*os.File) error {
	if len(rs) != 2*len(s.pod.Apps) && !(s.pod.Interactive && len(rs) == 0) {
		closeFiles(rs)
		return fmt.Errorf("%d output pipes for %d apps", len(rs), len(s.pod.Apps))
	}
	names := make([]string, len(s.pod.Apps))
	for i, a := range s.pod.Apps {
		names[i] = a.Name
	}
	return s.startTeesOf(names, rs, 0)
}

// sendPipes makes the stdio of app m.App and its copies to its log and
// its attach sessions, and sends the init their ends (MsgPipes): the app
// is starting again, or for the first time after it was added to the
// running pod. Its log is appended to. With m.TTY, fds holds the master
// of the app's terminal, which is relayed instead of pipes; with m.Stdin
// the app gets a stdin pipe that attach sessions write to.
func (s *supervisor) sendPipes(m *wire.Message, fds []int) error {
	app := m.App
	nack := func(err error) error {
		wire.CloseAll(fds)
		wire.Send(s.conn, &wire.Message{T: wire.MsgPipes, App: app}, nil)
		return err
	}
	if !poddir.ValidAppName(app) {
		wire.CloseAll(fds)
		s.conn.Close() // only a broken init asks for this
		return fmt.Errorf("bad app name %q", app)
	}
	if m.TTY {
		if len(fds) != 1 {
			return nack(fmt.Errorf("app %s: %d descriptors for its terminal", app, len(fds)))
		}
		// Non-blocking, so that the runtime's poller serves its reads.
		if err := unix.SetNonblock(fds[0], true); err != nil {
			return nack(err)
		}
		master := os.NewFile(uintptr(fds[0]), "pty")
		if err := s.startTTY(app, master, m.StdinOnce); err != nil {
			wire.Send(s.conn, &wire.Message{T: wire.MsgPipes, App: app}, nil)
			return err
		}
		return wire.Send(s.conn, &wire.Message{T: wire.MsgPipes, App: app}, nil)
	}
	wire.CloseAll(fds)
	fds = nil
	var rs, ws []*os.File
	for range 2 {
		r, w, err := os.Pipe()
		if err != nil {
			closeFiles(rs)
			closeFiles(ws)
			return nack(err)
		}
		rs, ws = append(rs, r), append(ws, w)
	}
	defer closeFiles(ws)
	var stdinR, stdinW *os.File
	if m.Stdin {
		var err error
		if stdinR, stdinW, err = os.Pipe(); err != nil {
			closeFiles(rs)
			return nack(err)
		}
		defer stdinR.Close()
	}
	run := s.appIOOf(app).begin(stdinW, nil, m.StdinOnce)
	if err := s.startTeesOf([]string{app}, rs, run); err != nil {
		return nack(err)
	}
	out := []int{int(ws[0].Fd()), int(ws[1].Fd())}
	if stdinR != nil {
		out = append(out, int(stdinR.Fd()))
	}
	return wire.SendWithFDs(s.conn, &wire.Message{T: wire.MsgPipes, App: app}, out)
}

// startTTY copies the master of app's terminal to its log (as stdout) and
// its attach sessions, which write to it. It takes master over.
func (s *supervisor) startTTY(app string, master *os.File, once bool) error {
	lw, err := s.openLog(app)
	if err != nil {
		master.Close()
		return err
	}
	io := s.appIOOf(app)
	run := io.begin(master, master, once)
	s.tees.Add(1)
	go func() {
		defer s.tees.Done()
		tee(master, os.Stdout, lw, poddir.LogStdout, io) // until EIO: the app and its heirs are gone
		io.end(run)
		s.closeLog(app, lw)
	}()
	return nil
}

// openLog opens app's log for appending and registers it for
// reopenLogs.
func (s *supervisor) openLog(app string) (*logWriter, error) {
	path := filepath.Join(s.dir, poddir.LogsDir, app+".log")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("app %s log: %w", app, err)
	}
	lw := &logWriter{f: f, path: path}
	s.logsMu.Lock()
	if s.logs == nil {
		s.logs = map[string]*logWriter{}
	}
	s.logs[app] = lw
	s.logsMu.Unlock()
	return lw, nil
}

// closeLog closes lw, app's log, once its copies are done.
func (s *supervisor) closeLog(app string, lw *logWriter) {
	s.logsMu.Lock()
	if s.logs[app] == lw {
		delete(s.logs, app)
	}
	s.logsMu.Unlock()
	lw.close()
}

// startTeesOf is startTees for the apps names, in that order; run is
// the apps' appIO run when it has begun (sendPipes), else 0.
func (s *supervisor) startTeesOf(names []string, rs []*os.File, run int) error {
	for i := 0; i < len(rs); i += 2 {
		app := names[i/2]
		lw, err := s.openLog(app)
		if err != nil {
			closeFiles(rs[i:])
			return err
		}
		io := s.appIOOf(app)
		run := run
		if run == 0 { // a boot app: no stdin
			run = io.begin(nil, nil, false)
		}
		var done sync.WaitGroup
		for j, out := range []*os.File{os.Stdout, os.Stderr} {
			r := rs[i+j]
			stream := poddir.LogStdout
			if j == 1 {
				stream = poddir.LogStderr
			}
			s.tees.Add(1)
			done.Add(1)
			go func() {
				defer s.tees.Done()
				defer done.Done()
				tee(r, out, lw, stream, io)
			}()
		}
		// The log file closes when both copies are done, and the
		// attach sessions end.
		go func() {
			done.Wait()
			io.end(run)
			s.closeLog(app, lw)
		}()
	}
	return nil
}

// logWriter appends records to an app's log (poddir.AppendLogRecord),
// one write each, for both of its streams.
type logWriter struct {
	mu   sync.Mutex
	f    *os.File
	path string
	rec  []byte
}

func (l *logWriter) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.f.Close()
}

// reopen opens the log's path again, so that what follows lands in the
// file there now (a log rotated away, poddir.ReopenLogsSignal). On
// failure the log goes on in the file it had.
func (l *logWriter) reopen() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.f.Close()
	l.f = f
	return nil
}

// reopenLogs reopens every running app's log.
func (s *supervisor) reopenLogs() {
	s.logsMu.Lock()
	defer s.logsMu.Unlock()
	for app, lw := range s.logs {
		if err := lw.reopen(); err != nil {
			s.log.Warn("reopening an app's log", "app", app, "err", err)
		}
	}
}

func (l *logWriter) write(stream string, partial bool, text []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rec = poddir.AppendLogRecord(l.rec[:0], time.Now(), stream, partial, text)
	l.f.Write(l.rec)
	if cap(l.rec) > 2*teeBuffer {
		l.rec = nil // a long line's buffer is not kept
	}
}

// tee copies src to out and to the app's attach sessions (io) as it
// comes, and to the app's log one record per
// line (a line longer than poddir.MaxLogLine in parts, and what is left
// without a newline at the end as a part), until src ends, and closes it.
// A failing out (a closed stdout, say) is dropped; the log keeps
// everything.
func tee(src, out *os.File, lw *logWriter, stream string, io *appIO) {
	channel := wire.AttachStdout
	if stream == poddir.LogStderr {
		channel = wire.AttachStderr
	}
	buf := make([]byte, teeBuffer)
	var line []byte // a line begun in an earlier read
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if out != nil {
				if _, werr := out.Write(buf[:n]); werr != nil {
					out = nil
				}
			}
			io.fanOut(channel, buf[:n])
			data := buf[:n]
			for {
				i := bytes.IndexByte(data, '\n')
				if i < 0 {
					break
				}
				if len(line) > 0 {
					line = append(line, data[:i]...)
					lw.write(stream, false, line)
					line = line[:0]
				} else {
					lw.write(stream, false, data[:i])
				}
				data = data[i+1:]
			}
			line = append(line, data...)
			for len(line) >= poddir.MaxLogLine {
				lw.write(stream, true, line[:poddir.MaxLogLine])
				line = append(line[:0], line[poddir.MaxLogLine:]...)
			}
			if len(line) == 0 && cap(line) > teeBuffer {
				line = nil
			}
		}
		if err != nil {
			if len(line) > 0 {
				lw.write(stream, true, line)
			}
			src.Close()
			return
		}
	}
}

// teeBuffer is each output copy's buffer. It lives as long as the pod:
// small, because a supervisor is mostly idle and its memory is the
// pod's cost; the pipe itself buffers 64 KiB.
const teeBuffer = 8 << 10
