package stage1

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// handoffDelay is how long Exec supervises a booted pod in the calling
// process (karman) before it hands the pod to the lean supervisor binary.
// A pod that ends sooner never pays for that program's start (its exec
// and Go runtime: a few milliseconds of CPU on the start path of a short
// pod); one that runs longer costs the larger process's memory for no
// more than this.
var handoffDelay = 50 * time.Millisecond // a variable for the tests only

// handoff is how an in-place supervisor (Exec) becomes the lean one.
type handoff struct {
	at     time.Time // when serve hands the pod over
	exe    string    // the lean supervisor binary
	args   []string  // its command line, without --init, --booted, --resumed
	lockFD int
}

// superviseInPlace supervises the pod that startInit has just booted, in the
// calling process, from the calling goroutine (locked to the thread that
// forked the init), and returns the pod's exit status; or execs the lean
// supervisor once the pod has run for handoffDelay (handOff).
func (s *supervisor) superviseInPlace(in *Init, lockFD int, opts ExecOptions) int {
	level := slog.LevelWarn
	if s.debug {
		level = slog.LevelDebug
	}
	s.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("pod", filepath.Base(s.dir))
	s.notify = os.Getenv("NOTIFY_SOCKET")
	s.status = map[string]*AppStatus{}
	s.initPID, s.initFD, s.booted, s.logs = in.pid, in.fd, true, in.logs
	s.inPlace = true
	s.handoff = &handoff{
		at:     time.Now().Add(handoffDelay),
		exe:    opts.path(),
		args:   supervisorArgs(s.dir, lockFD, opts),
		lockFD: lockFD,
	}
	// Nothing this process holds may leak into what it starts (a pod
	// teardown command); handOff passes on what the lean supervisor needs.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		s.log.Warn("close-on-exec", "err", err)
	}
	return s.main()
}

// handOff execs the lean supervisor binary with the pod: the pod lock,
// the init (--init: its PID, which stays this process's child across the
// exec, and the socket, whose unread reports wait for the new supervisor),
// the apps' output pipes (--booted, "-" for an output that has ended; what
// the apps write meanwhile waits in the pipes) and --resumed (the apps'
// status so far is in the pod directory). It runs on the goroutine that
// serves the init, between two reports, locked to the thread that forked
// the init, so that the init's parent-death signal stays armed. It
// returns only if the pod must stay here: a stop has begun, or the exec
// failed (logged); the tees then run on.
func (s *supervisor) handOff(h *handoff) {
	if err := s.pauseTees(); err != nil {
		s.log.Warn("supervising the pod in place", "err", err)
		s.resumeTees()
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		s.resumeTees()
		return
	}
	s.log.Debug("handing the pod to the lean supervisor", "binary", h.exe)
	err := h.exec(s)
	s.log.Warn("handing the pod to the lean supervisor failed; supervising it in place", "binary", h.exe, "err", err)
	s.resumeTees()
}

func (h *handoff) exec(s *supervisor) error {
	connFD := -1
	if rc, err := s.conn.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { connFD = int(fd) })
	}
	if connFD < 0 {
		return errors.New("no descriptor for the init's socket")
	}
	pass := []int{h.lockFD, connFD}
	outs := make([]string, len(s.outputs))
	for i, f := range s.outputs {
		if f == nil {
			outs[i] = "-"
			continue
		}
		fd := rawFD(f) // non-blocking still, for the new supervisor's poller
		outs[i] = strconv.Itoa(fd)
		pass = append(pass, fd)
	}
	defer func() { // on failure
		for _, fd := range pass {
			unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
		}
	}()
	for _, fd := range pass {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return fmt.Errorf("pass descriptor %d: %w", fd, err)
		}
	}
	args := slices.Insert(slices.Clone(h.args), len(h.args)-1,
		fmt.Sprintf("--init=%d,%d", s.initPID, connFD), "--booted="+strings.Join(outs, ","), "--resumed")
	return syscall.Exec(h.exe, args, stage1Env())
}

// loadStatus reads the status files of the apps that an in-place
// supervisor wrote before it handed the pod over (--resumed).
func (s *supervisor) loadStatus() {
	for _, a := range s.pod.Apps {
		b, err := os.ReadFile(filepath.Join(s.dir, AppsState, a.Name+".json"))
		if err != nil {
			continue // not started yet
		}
		st := &AppStatus{}
		if err := json.Unmarshal(b, st); err != nil {
			s.log.Warn("reading app status", "app", a.Name, "err", err)
			continue
		}
		s.status[a.Name] = st
	}
}
