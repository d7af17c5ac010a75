package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/karman-project/karman/agentapi"
	"github.com/karman-project/karman/internal/atomicfile"
)

// maxEventsKept bounds the events kept in memory and in the log: older
// ones are dropped when the log is compacted at start.
const maxEventsKept = 100000

// eventLog is the persistent, sequenced event log.
type eventLog struct {
	mu      sync.Mutex
	f       *os.File
	path    string
	events  []agentapi.Event // in order; events[i].Seq == first+i
	changed chan struct{}    // closed and replaced at each append
	lastSeq atomic.Uint64    // read without mu
	// writeErr is the last failure to write or sync an event (mu).
	writeErr error
}

// openEventLog reads the log at path (creating it) and continues its
// sequence. A torn last line (a crash mid-write) is dropped.
func openEventLog(path string) (*eventLog, error) {
	l := &eventLog{path: path, changed: make(chan struct{})}
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("event log: %w", err)
	}
	for line := range bytes.Lines(b) {
		var ev agentapi.Event
		if json.Unmarshal(line, &ev) != nil || ev.Seq == 0 {
			continue
		}
		if n := len(l.events); n > 0 && ev.Seq != l.events[n-1].Seq+1 {
			continue // never goes backwards
		}
		l.events = append(l.events, ev)
	}
	compact := len(l.events) > maxEventsKept
	if compact {
		l.events = l.events[len(l.events)-maxEventsKept/2:]
	}
	if compact || (len(b) > 0 && b[len(b)-1] != '\n') {
		if err := l.rewrite(); err != nil {
			return nil, err
		}
	}
	if n := len(l.events); n > 0 {
		l.lastSeq.Store(l.events[n-1].Seq)
	}
	if l.f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("event log: %w", err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil { // the log's creation
		l.f.Close()
		return nil, fmt.Errorf("event log: %w", err)
	}
	return l, nil
}

// rewrite replaces the file with the events in memory.
func (l *eventLog) rewrite() error {
	var buf bytes.Buffer
	for _, ev := range l.events {
		b, _ := json.Marshal(ev)
		buf.Write(append(b, '\n'))
	}
	return writeAtomic(l.path, buf.Bytes())
}

// close closes the log, reporting a write or sync that failed since it
// was opened.
func (l *eventLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.writeErr, l.f.Close())
}

// last returns the last sequence number (0 when none).
func (l *eventLog) last() uint64 { return l.lastSeq.Load() }

// add appends ev with the next sequence number, writes it and wakes the
// streams. The write is one write(2) of a whole line on an O_APPEND file,
// followed by an fsync before any stream sees the event: an event
// that a client was sent survives the agent being killed and a power
// loss. A failed write or sync is kept for err and the event is still
// served from memory (it is lost at the next start).
func (l *eventLog) add(ev agentapi.Event) agentapi.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	ev.Seq = 1
	if n := len(l.events); n > 0 {
		ev.Seq = l.events[n-1].Seq + 1
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	b, _ := json.Marshal(ev)
	if _, err := l.f.Write(append(b, '\n')); err != nil {
		l.writeErr = fmt.Errorf("event log: event %d: %w", ev.Seq, err)
	} else if err := l.f.Sync(); err != nil {
		l.writeErr = fmt.Errorf("event log: event %d: sync: %w", ev.Seq, err)
	}
	l.events = append(l.events, ev)
	l.lastSeq.Store(ev.Seq)
	if len(l.events) > maxEventsKept {
		l.events = l.events[len(l.events)-maxEventsKept/2:]
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return ev
}

// since returns the events after seq and a channel closed at the next add.
func (l *eventLog) since(seq uint64) ([]agentapi.Event, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := 0
	if n := len(l.events); n > 0 {
		first := l.events[0].Seq
		if seq >= first {
			i = int(min(seq-first+1, uint64(n)))
		}
	}
	return append([]agentapi.Event(nil), l.events[i:]...), l.changed
}

// stream writes the events after seq as JSON lines to w, flushing after
// each batch, until ctx ends (or, without follow, once the recorded
// events are written).
func (l *eventLog) stream(ctx context.Context, seq uint64, follow bool, w *bufio.Writer, flush func()) error {
	enc := json.NewEncoder(w)
	for {
		evs, changed := l.since(seq)
		for _, ev := range evs {
			if err := enc.Encode(ev); err != nil {
				return err
			}
			seq = ev.Seq
		}
		if err := w.Flush(); err != nil {
			return err
		}
		flush()
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}
