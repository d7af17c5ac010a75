package stage1

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// startTees opens <pod>/logs/<app>.log and, for the app's stdout and
// stderr, a pipe whose read end a goroutine copies to both the
// supervisor's own stdout or stderr and the log file, chunk by chunk, so
// that each stream keeps its order. It returns the write ends for the init.
func (s *supervisor) startTees(app string) ([]*os.File, error) {
	logf, err := os.OpenFile(filepath.Join(s.dir, LogsDir, app+".log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("app %s log: %w", app, err)
	}
	var ws []*os.File
	var done sync.WaitGroup
	for _, out := range []*os.File{os.Stdout, os.Stderr} {
		r, w, err := os.Pipe()
		if err != nil {
			for _, w := range ws {
				w.Close()
			}
			logf.Close()
			return nil, fmt.Errorf("app %s output: %w", app, err)
		}
		ws = append(ws, w)
		s.tees.Add(1)
		done.Add(1)
		go func() {
			defer s.tees.Done()
			defer done.Done()
			tee(r, out, logf)
		}()
	}
	// The log file closes when both copies are done.
	go func() {
		done.Wait()
		logf.Close()
	}()
	return ws, nil
}

// tee copies src to out and logf until src ends. A failing out (a closed
// stdout, say) is dropped; the log keeps everything.
func tee(src, out, logf *os.File) {
	defer src.Close()
	buf := make([]byte, teeBuffer)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if out != nil {
				if _, werr := out.Write(buf[:n]); werr != nil {
					out = nil
				}
			}
			logf.Write(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// teeBuffer is each output copy's buffer. It lives as long as the pod:
// small, because a supervisor is mostly idle and its memory is the
// pod's cost; the pipe itself buffers 64 KiB.
const teeBuffer = 8 << 10
