package stage0

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/karman-project/karman/stage1/poddir"
)

// Logs writes the output kept for an app of the pod (the only app when app
// is empty) to w. With follow it keeps writing new output until the pod
// has exited or ctx ends.
func (r *Runtime) Logs(ctx context.Context, uuid, app string, follow bool, w io.Writer) error {
	p, err := r.find(uuid)
	if err != nil {
		return err
	}
	pd, err := poddir.Load(p.path)
	if err != nil {
		return fmt.Errorf("pod %s: %w", p.uuid, err)
	}
	if app == "" {
		if len(pd.Apps) != 1 {
			names := make([]string, len(pd.Apps))
			for i, a := range pd.Apps {
				names[i] = a.Name
			}
			return fmt.Errorf("pod %s has %d apps (%v); choose one with --app", p.uuid, len(pd.Apps), names)
		}
		app = pd.Apps[0].Name
	}
	found := false
	for _, a := range pd.Apps {
		found = found || a.Name == app
	}
	if !found {
		return fmt.Errorf("pod %s has no app %q: %w", p.uuid, app, ErrNotFound)
	}
	f, err := os.Open(filepath.Join(p.path, poddir.LogsDir, app+".log"))
	if errors.Is(err, os.ErrNotExist) {
		if !follow {
			return nil
		}
	} else if err != nil {
		return err
	} else {
		defer f.Close()
	}
	var lr logReader
	for {
		if f != nil {
			if err := lr.copy(w, f); err != nil {
				return err
			}
		}
		if !follow {
			return lr.flush(w)
		}
		if s := p.state(); s != Running && s != Prepared && s != Preparing {
			if f != nil {
				if err := lr.copy(w, f); err != nil { // what was written before it ended
					return err
				}
			}
			return lr.flush(w)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
		if f == nil {
			if f, err = os.Open(filepath.Join(p.path, poddir.LogsDir, app+".log")); err != nil {
				f = nil
			} else {
				defer f.Close()
			}
		}
		if np, err := r.relocate(p); err == nil {
			p = np
		}
	}
}

// logReader turns an app's log, one record per line
// (poddir.AppendLogRecord), back into the app's output, both streams in
// the order the supervisor read them: each record's text, with a newline
// unless it was part of a line. A line that is not a record (a log of an
// older karman, raw output) is shown as it is. A last line without its
// newline yet (being written) waits for the next copy.
type logReader struct {
	buf  []byte
	rest []byte
}

func (lr *logReader) copy(w io.Writer, f *os.File) error {
	if lr.buf == nil {
		lr.buf = make([]byte, 32<<10)
	}
	var out []byte
	for {
		n, err := f.Read(lr.buf)
		data := append(lr.rest, lr.buf[:n]...)
		out = out[:0]
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break
			}
			out = appendRecordText(out, data[:i])
			data = data[i+1:]
		}
		lr.rest = append(lr.rest[:0], data...)
		if len(out) > 0 {
			if _, werr := w.Write(out); werr != nil {
				return werr
			}
		}
		if err == io.EOF || n == 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// flush shows a last line that never got its newline.
func (lr *logReader) flush(w io.Writer) error {
	if len(lr.rest) == 0 {
		return nil
	}
	out := lr.rest
	if _, ok := poddir.ParseLogRecord(lr.rest); ok {
		out = appendRecordText(nil, lr.rest)
	}
	_, err := w.Write(out)
	lr.rest = nil
	return err
}

func appendRecordText(out, line []byte) []byte { return poddir.AppendLogText(out, line) }

// ReopenLogs has a running pod's supervisor open each running app's log
// path again (poddir.ReopenLogsSignal): after a log was renamed away, the
// app's output goes on in a new file at its path. The supervisor does it
// soon after ReopenLogs returns, not before.
func (r *Runtime) ReopenLogs(_ context.Context, uuid string) error {
	return r.signalSupervisor(uuid, poddir.ReopenLogsSignal, "reopening its logs (a signal)")
}
