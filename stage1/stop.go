package stage1

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/karman-project/karman/stage1/internal/wire"
	"github.com/karman-project/karman/stage1/poddir"
	"golang.org/x/sys/unix"
)

// Stop asks the running pod in podDir to stop: SIGTERM to every app, then
// SIGKILL to the whole pod after its StopTimeout; force kills at once. It
// returns once the pod has the request, not when it has ended (wait on
// the pod lock for that).
//
// The request goes to the pod init over the control socket. While the
// init is not listening (the pod is starting, or ending), Stop signals the
// supervisor instead: SIGTERM, or SIGKILL for force, which takes the pod
// down without recording its exit status.
func Stop(podDir string, force bool) error {
	c, err := dialCtl(podDir)
	if err == nil {
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		req, _ := json.Marshal(&wire.CtlRequest{Op: "stop", Force: force})
		if _, err := c.Write(req); err != nil {
			return fmt.Errorf("stop: %w", err)
		}
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if errors.Is(err, io.EOF) || errors.Is(err, unix.ECONNRESET) {
			return nil // the init is exiting: the pod is ending anyway
		}
		if err != nil {
			return fmt.Errorf("stop: %w", err)
		}
		var r wire.CtlReply
		if err := json.Unmarshal(buf[:n], &r); err != nil {
			return fmt.Errorf("stop: bad reply: %w", err)
		}
		if r.Error != "" {
			return fmt.Errorf("stop: %s", r.Error)
		}
		return nil
	}
	if !errors.Is(err, ErrNotRunning) {
		return fmt.Errorf("stop: %w", err)
	}
	running, lerr := locked(podDir)
	if lerr != nil {
		return fmt.Errorf("stop: %w", lerr)
	}
	if !running {
		return fmt.Errorf("stop: %w", ErrNotRunning)
	}
	// The lock is held, so the supervisor that wrote this PID is alive.
	b, rerr := os.ReadFile(filepath.Join(podDir, poddir.SupervisorPID))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if rerr != nil || pid <= 1 {
		return fmt.Errorf("stop: the pod is starting and has no supervisor PID yet; try again")
	}
	sig := unix.SIGTERM
	if force {
		sig = unix.SIGKILL
	}
	if err := unix.Kill(pid, sig); err != nil {
		return fmt.Errorf("stop: signal the supervisor (pid %d): %w", pid, err)
	}
	return nil
}

// locked tells whether someone (the supervisor) holds the pod's lock.
func locked(podDir string) (bool, error) {
	fd, err := unix.Open(podDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	switch err := unix.Flock(fd, unix.LOCK_SH|unix.LOCK_NB); {
	case errors.Is(err, unix.EWOULDBLOCK):
		return true, nil
	case err != nil:
		return false, err
	}
	return false, nil
}
