package server

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// procEntries counts the numeric entries of /proc: its processes.
func procEntries(t *testing.T) int64 {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			n++
		}
	}
	return n
}

// TestHostProcessesCountsProcesses: with 64 extra threads in this
// process, the host's process count must not grow with them (the
// threads are what /proc/loadavg counts).
func TestHostProcessesCountsProcesses(t *testing.T) {
	const threads = 64
	var ready, release sync.WaitGroup
	ready.Add(threads)
	release.Add(1)
	for range threads {
		go func() {
			runtime.LockOSThread() // one OS thread each, ended with the goroutine
			ready.Done()
			release.Wait()
		}()
	}
	defer release.Done()
	ready.Wait()
	before := procEntries(t)
	s := sampleHost(t.TempDir())
	after := procEntries(t)
	// Other processes come and go meanwhile: allow for a few.
	const slack = 16
	if s.procs < min(before, after)-slack || s.procs > max(before, after)+slack {
		t.Errorf("hostProcesses %d, but /proc lists %d then %d processes", s.procs, before, after)
	}
	if s.pids < s.procs+threads {
		t.Errorf("PIDs in use %d with %d processes, want at least the %d threads more", s.pids, s.procs, threads)
	}
	msg := conditions(s, nil, time.Now())[3].Message
	if !strings.Contains(msg, "PIDs in use") || !strings.Contains(msg, strconv.FormatInt(s.procs, 10)+" processes") {
		t.Errorf("PIDPressure message %q", msg)
	}
}
