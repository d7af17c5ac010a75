package stage1

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/karman-project/karman/stage1/poddir"
	"golang.org/x/sys/unix"
)

// The control socket (CtlSocket) is served by the pod init, which is in
// every namespace of the pod and sees the apps' roots. A client sends one
// request per connection, as one SOCK_SEQPACKET packet; an enter request
// carries the caller's stdin, stdout and stderr as SCM_RIGHTS. The init
// replies with ctlReply packets: {pid} once the command runs, then
// {done, code}. Closing the connection kills the command.

type ctlRequest struct {
	Op    string   `json:"op"` // "enter" or "stop"
	App   string   `json:"app,omitempty"`
	Args  []string `json:"args,omitempty"`
	Env   []string `json:"env,omitempty"` // nil: the app's
	TTY   bool     `json:"tty,omitempty"`
	Rows  uint16   `json:"rows,omitempty"` // the pty's window size
	Cols  uint16   `json:"cols,omitempty"`
	Force bool     `json:"force,omitempty"`
}

type ctlReply struct {
	PID   int    `json:"pid,omitempty"`
	Done  bool   `json:"done,omitempty"`
	Code  int    `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
}

// ErrNotRunning is returned (wrapped) by Enter and Stop for a pod that is
// not running.
var ErrNotRunning = errors.New("pod is not running")

// Enter runs argv inside app `app` of the running pod in podDir: in all
// the pod's namespaces, in the app's root, with its working directory,
// user and groups, and env (nil: the app's environment). It returns the
// command's exit status: 127 not found, 126 not executable, 128+N when
// killed by signal N. Nil stdio means /dev/null.
//
// With tty the command gets a new pseudo-terminal as its controlling
// terminal; Enter relays it to stdin and stdout (putting stdin in raw mode
// if it is a terminal, and passing window size changes on) and stderr is
// not used. Cancelling ctx kills the command.
func Enter(ctx context.Context, podDir, app string, argv []string, env []string, stdin, stdout, stderr *os.File, tty bool) (int, error) {
	if len(argv) == 0 {
		return 0, errors.New("enter: no command")
	}
	conn, err := dialCtl(podDir)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	req := &ctlRequest{Op: "enter", App: app, Args: argv, Env: env, TTY: tty}
	var rights []byte
	if tty {
		req.Rows, req.Cols = winsize(stdin, stdout)
	} else {
		files := []*os.File{stdin, stdout, stderr}
		for i, f := range files {
			if f == nil {
				if files[i], err = os.OpenFile(os.DevNull, os.O_RDWR, 0); err != nil {
					return 0, err
				}
				defer files[i].Close()
			}
		}
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd()) // blocking mode: the command shares the file description
		}
		rights = unix.UnixRights(fds...)
	}
	b, _ := json.Marshal(req)
	if _, _, err := conn.WriteMsgUnix(b, rights, nil); err != nil {
		return 0, fmt.Errorf("enter: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var relay *ptyRelay
	defer func() {
		if relay != nil {
			relay.close()
		}
	}()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		var fds []int
		if err == nil && oobn > 0 {
			fds = parseRights(oob[:oobn])
		}
		if err != nil || n == 0 {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, fmt.Errorf("enter: the pod ended before the command did: %v", err)
		}
		var r ctlReply
		if err := json.Unmarshal(buf[:n], &r); err != nil {
			closeAll(fds)
			return 0, fmt.Errorf("enter: bad reply: %w", err)
		}
		if tty && relay == nil && len(fds) == 1 {
			relay = newPTYRelay(os.NewFile(uintptr(fds[0]), "pty"), stdin, stdout)
			fds = nil
		}
		closeAll(fds)
		if r.Error != "" {
			return 0, fmt.Errorf("enter: %s", r.Error)
		}
		if r.Done {
			if relay != nil {
				relay.wait(ctx)
			}
			return r.Code, nil
		}
	}
}

func parseRights(oob []byte) []int {
	var fds []int
	if cmsgs, err := unix.ParseSocketControlMessage(oob); err == nil {
		for _, cm := range cmsgs {
			if rights, err := unix.ParseUnixRights(&cm); err == nil {
				fds = append(fds, rights...)
			}
		}
	}
	return fds
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// dialCtl connects to the pod's control socket.
func dialCtl(podDir string) (*net.UnixConn, error) {
	var c *net.UnixConn
	err := withSocketPath(filepath.Join(podDir, poddir.CtlSocket), func(p string) error {
		var err error
		c, err = net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: p, Net: "unixpacket"})
		return err
	})
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ECONNREFUSED) {
			return nil, fmt.Errorf("%w (%s: %v)", ErrNotRunning, podDir, err)
		}
		return nil, fmt.Errorf("pod control socket: %w", err)
	}
	return c, nil
}

// serveCtl accepts control connections until the init exits.
func (in *podInit) serveCtl() {
	for {
		c, err := in.ctl.AcceptUnix()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				in.log.Warn("control socket", "err", err)
			}
			return
		}
		go in.handleCtl(c)
	}
}

func (in *podInit) handleCtl(c *net.UnixConn) {
	defer c.Close()
	buf := make([]byte, maxPacket)
	oob := make([]byte, unix.CmsgSpace(3*4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return
	}
	fds := parseRights(oob[:oobn])
	defer func() { closeAll(uniq(fds)) }()
	reply := func(r ctlReply, fds ...int) {
		b, _ := json.Marshal(r)
		var rights []byte
		if len(fds) > 0 {
			rights = unix.UnixRights(fds...)
		}
		c.WriteMsgUnix(b, rights, nil)
	}
	var req ctlRequest
	if err := json.Unmarshal(buf[:n], &req); err != nil {
		reply(ctlReply{Error: "bad request: " + err.Error()})
		return
	}
	switch req.Op {
	case "stop":
		// Acknowledge first: the stop may end the pod, and the init with it.
		reply(ctlReply{Done: true})
		in.post(event{stop: true, force: req.Force})
	case "enter":
		in.enter(c, &req, &fds, reply)
	default:
		reply(ctlReply{Error: "unknown request " + req.Op})
	}
}

// enter runs an enter request's command and reports its status.
func (in *podInit) enter(c *net.UnixConn, req *ctlRequest, pfds *[]int, reply func(ctlReply, ...int)) {
	var a *appProc
	for _, x := range in.apps {
		if x.app.Name == req.App {
			a = x
		}
	}
	switch {
	case a == nil:
		reply(ctlReply{Error: fmt.Sprintf("no app %q in the pod", req.App)})
		return
	case len(req.Args) == 0 || len(*pfds) != 3 && !req.TTY:
		reply(ctlReply{Error: "bad enter request"})
		return
	}
	master := -1
	if req.TTY {
		m, slave, err := openPTY(a.root, req, a.app.UID)
		if err != nil {
			reply(ctlReply{Error: err.Error()})
			return
		}
		master = m
		defer unix.Close(master)
		closeAll(*pfds)
		*pfds = []int{slave, slave, slave}
	}
	fds := *pfds
	env := req.Env
	if env == nil {
		env = a.app.Env
	}
	exited := make(chan unix.WaitStatus, 1)
	p := &proc{
		app: a.app, root: a.root, rootPath: a.rootPath, args: req.Args, env: env, files: fds,
		setup: func(sys *syscall.SysProcAttr) {
			sys.Setsid = true
			if req.TTY {
				sys.Setctty, sys.Ctty = true, 0
			}
		},
	}
	pid, err := in.launch(p, nil, func(ws unix.WaitStatus) { exited <- ws })
	if err != nil {
		var xe *execError
		if !errors.As(err, &xe) {
			xe = &execError{Code: poddir.ExitRuntimeError, Path: req.Args[0], Reason: err.Error()}
		}
		fmt.Fprintf(fdWriter(fds[2]), "karman: enter app %s: %s: %s\n", a.app.Name, xe.Path, xe.Reason)
		if master >= 0 {
			reply(ctlReply{Done: true, Code: xe.Code}, master) // the message is in the pty
		} else {
			reply(ctlReply{Done: true, Code: xe.Code})
		}
		return
	}
	in.log.Debug("enter", "app", a.app.Name, "pid", pid, "args", fmt.Sprint(req.Args))
	// Only the command holds the caller's files from here on.
	closeAll(uniq(fds))
	*pfds = nil
	if master >= 0 {
		reply(ctlReply{PID: pid}, master)
	} else {
		reply(ctlReply{PID: pid})
	}
	gone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, c) // returns when the caller hangs up
		close(gone)
	}()
	select {
	case ws := <-exited:
		code, _ := waitCode(ws)
		reply(ctlReply{Done: true, Code: code})
	case <-gone:
		unix.Kill(pid, unix.SIGKILL)
	}
}

// uniq drops repeated descriptors (a pty slave given as stdin, stdout and
// stderr).
func uniq(fds []int) []int {
	var out []int
	for _, fd := range fds {
		if !slices.Contains(out, fd) {
			out = append(out, fd)
		}
	}
	return out
}
