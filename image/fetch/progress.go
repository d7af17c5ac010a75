package fetch

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Progress reports a fetch layer by layer.
type Progress interface {
	Layer(d v1.Hash, size int64) LayerProgress
}

// LayerProgress is one layer's progress: Add is called as compressed bytes
// arrive (from several goroutines), Done once at the end.
type LayerProgress interface {
	Add(n int)
	Done(fetched bool, err error)
}

type nopProgress struct{}

func (nopProgress) Add(int)          {}
func (nopProgress) Done(bool, error) {}

// Terminal draws one line per layer on a terminal and redraws them in
// place until Stop.
type Terminal struct {
	w      io.Writer
	mu     sync.Mutex
	bars   []*bar
	drawn  int
	stop   chan struct{}
	done   chan struct{}
	closed bool
}

type bar struct {
	d     v1.Hash
	size  int64
	n     atomic.Int64
	state atomic.Value // string
}

// NewTerminal starts a display on w, which should be a terminal.
func NewTerminal(w io.Writer) *Terminal {
	t := &Terminal{w: w, stop: make(chan struct{}), done: make(chan struct{})}
	go t.loop()
	return t
}

// Layer adds a line for layer d.
func (t *Terminal) Layer(d v1.Hash, size int64) LayerProgress {
	b := &bar{d: d, size: size}
	b.state.Store("waiting")
	t.mu.Lock()
	t.bars = append(t.bars, b)
	t.mu.Unlock()
	return b
}

func (b *bar) Add(n int) {
	b.n.Add(int64(n))
	b.state.Store("fetching")
}

func (b *bar) Done(fetched bool, err error) {
	switch {
	case err != nil:
		b.state.Store("failed")
	case fetched:
		b.state.Store("done")
	default:
		b.state.Store("present")
	}
}

func (t *Terminal) loop() {
	defer close(t.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			t.draw()
			return
		case <-tick.C:
			t.draw()
		}
	}
}

func (t *Terminal) draw() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.drawn > 0 {
		fmt.Fprintf(t.w, "\x1b[%dA", t.drawn)
	}
	for _, b := range t.bars {
		n := b.n.Load()
		pct := 100.0
		if b.size > 0 {
			pct = float64(n) * 100 / float64(b.size)
		}
		fmt.Fprintf(t.w, "\x1b[2K%s  %-8s %6.1f / %6.1f MB %5.1f%%\n", b.d.Hex[:12], b.state.Load(), mb(n), mb(b.size), pct)
	}
	t.drawn = len(t.bars)
}

func mb(n int64) float64 { return float64(n) / 1e6 }

// Stop draws the final state and ends the display.
func (t *Terminal) Stop() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	t.mu.Unlock()
	close(t.stop)
	<-t.done
}
