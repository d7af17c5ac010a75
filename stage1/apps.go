package stage1

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/karman-project/karman/stage1/internal/wire"
	"github.com/karman-project/karman/stage1/poddir"
	"golang.org/x/sys/unix"
)

// The app requests of a running pod, sent to its init over the control
// socket (see doc.go, "Mutable pods"). Each returns once the init has
// done what was asked; errors are the init's refusal, in a sentence.

// AddAppFiles are what the init needs of an app added to the running pod
// that only the host's mount namespace has: a detached mount of its root
// filesystem (Root), a detached clone of each volume's source, in the
// order of App.Mounts (Volumes), and its cgroup files (Tasks: v1 task
// files, or with CgroupV2 its cgroup2 directory). The caller keeps and
// closes them.
type AddAppFiles struct {
	Root     int
	Volumes  []int
	Tasks    []int
	CgroupV2 bool
}

// AddApp asks the init of the running pod in podDir to mount app (not yet
// in pod.json: stage0 records it once the init has it) and to keep it,
// created and not started.
func AddApp(ctx context.Context, podDir string, app *poddir.App, f AddAppFiles) error {
	fds := append(append([]int{f.Root}, f.Volumes...), f.Tasks...)
	_, err := ctlCall(ctx, podDir, &wire.CtlRequest{Op: "app-add", App: app.Name, Spec: app, Tasks: len(f.Tasks), CgroupV2: f.CgroupV2}, fds)
	return err
}

// StartApp starts app in the running pod, for the first time after it was
// added or again after it exited, and returns its PID in the pod's PID
// namespace. A command that cannot be started is an error, *StartError.
func StartApp(ctx context.Context, podDir, app string) (int, error) {
	since := time.Now()
	r, err := ctlCall(ctx, podDir, &wire.CtlRequest{Op: "app-start", App: app}, nil)
	if err == nil {
		awaitStatus(ctx, podDir, app, func(st poddir.AppStatus) bool { return !st.Started.Before(since) })
	}
	return r.PID, err
}

// StopApp stops app in the running pod: SIGTERM, then SIGKILL to its
// process group after timeout (the pod's stop timeout when not
// positive), SIGKILL at once with force. It returns the app's exit status
// once it has ended.
func StopApp(ctx context.Context, podDir, app string, timeout time.Duration, force bool) (int, error) {
	since := time.Now()
	r, err := ctlCall(ctx, podDir, &wire.CtlRequest{Op: "app-stop", App: app, Timeout: timeout, Force: force}, nil)
	if err == nil {
		awaitStatus(ctx, podDir, app, func(st poddir.AppStatus) bool { return st.Exited && !st.Finished.Before(since) })
	}
	if errors.Is(err, errEnded) {
		// The app was the last of a pod that is not kept alive: the pod
		// ended with it, before the init could reply.
		return 0, nil
	}
	return r.Code, err
}

// RemoveApp unmounts app from the running pod and has the init forget
// it; a running app is refused unless force, which kills it first.
func RemoveApp(ctx context.Context, podDir, app string, force bool) error {
	_, err := ctlCall(ctx, podDir, &wire.CtlRequest{Op: "app-rm", App: app, Force: force}, nil)
	return err
}

// awaitStatus waits, for a short while at most, until the supervisor has
// recorded what the init just did to app: the init replies once the app
// started or ended, and tells the supervisor, which writes the app's
// status, at the same time. So a status read after StartApp or StopApp
// returns shows the new run or its end. A supervisor that does not
// record it in time (it is gone, say) leaves the status as it is.
func awaitStatus(ctx context.Context, podDir, app string, done func(poddir.AppStatus) bool) {
	file := filepath.Join(podDir, poddir.AppsState, app+".json")
	deadline := time.Now().Add(5 * time.Second)
	for wait := 50 * time.Microsecond; time.Now().Before(deadline) && ctx.Err() == nil; wait = min(2*wait, time.Millisecond) {
		var st poddir.AppStatus
		if b, err := os.ReadFile(file); err == nil && json.Unmarshal(b, &st) == nil && done(st) {
			return
		}
		time.Sleep(wait)
	}
}

// StartError is an app whose command could not be started: Code is 127
// (not found) or 126 (cannot be executed).
type StartError struct {
	Code int
	Msg  string
}

func (e *StartError) Error() string { return e.Msg }

// errEnded is a pod that ended before it replied to a request it had.
var errEnded = fmt.Errorf("%w: the pod ended while handling the request", ErrNotRunning)

// ErrRefused wraps what the init refused.
var ErrRefused = errors.New("refused by the pod")

// ctlCall sends req with fds and waits for the reply, or for ctx.
func ctlCall(ctx context.Context, podDir string, req *wire.CtlRequest, fds []int) (wire.CtlReply, error) {
	var r wire.CtlReply
	c, err := dialCtl(podDir)
	if err != nil {
		return r, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	b, err := json.Marshal(req)
	if err != nil {
		return r, err
	}
	if len(b) > wire.MaxPacket {
		return r, fmt.Errorf("the request is %d bytes, more than the %d the pod's control socket takes: shorten the app's environment or arguments", len(b), wire.MaxPacket)
	}
	var rights []byte
	if len(fds) > 0 {
		rights = unix.UnixRights(fds...)
	}
	if _, _, err := c.WriteMsgUnix(b, rights, nil); err != nil {
		if wire.IsClosed(err) {
			return r, errEnded // the pod ended between dial and send
		}
		return r, fmt.Errorf("pod control socket: %w", err)
	}
	buf := make([]byte, wire.MaxPacket)
	n, err := c.Read(buf)
	if err != nil {
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
		if n == 0 || wire.IsClosed(err) {
			return r, errEnded
		}
		return r, fmt.Errorf("pod control socket: %w", err)
	}
	if n == 0 {
		return r, errEnded
	}
	if err := json.Unmarshal(buf[:n], &r); err != nil {
		return r, fmt.Errorf("pod control socket: bad reply: %w", err)
	}
	switch {
	case r.Error != "" && r.Code != 0:
		return r, &StartError{Code: r.Code, Msg: r.Error}
	case r.Error != "":
		return r, fmt.Errorf("%w: %s", ErrRefused, r.Error)
	}
	return r, nil
}
