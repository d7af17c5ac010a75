package podinit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"syscall"

	"github.com/karman-project/karman/stage1/internal/wire"
	"github.com/karman-project/karman/stage1/poddir"
	"golang.org/x/sys/unix"
)

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
	buf := make([]byte, wire.MaxPacket)
	oob := make([]byte, unix.CmsgSpace(wire.MaxFDs*4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return
	}
	fds := wire.ParseRights(oob[:oobn])
	defer func() { wire.CloseAll(uniq(fds)) }()
	reply := func(r wire.CtlReply, fds ...int) {
		b, _ := json.Marshal(r)
		var rights []byte
		if len(fds) > 0 {
			rights = unix.UnixRights(fds...)
		}
		c.WriteMsgUnix(b, rights, nil)
	}
	var req wire.CtlRequest
	if err := json.Unmarshal(buf[:n], &req); err != nil {
		reply(wire.CtlReply{Error: "bad request: " + err.Error()})
		return
	}
	switch req.Op {
	case "stop":
		// Acknowledge first: the stop may end the pod, and the init with it.
		reply(wire.CtlReply{Done: true})
		in.post(event{stop: true, force: req.Force})
	case "enter":
		in.enter(c, &req, &fds, reply)
	case "app-add":
		// The descriptors: the app's root, its volumes, its cgroup files.
		nvol := 0
		if req.Spec != nil {
			nvol = len(req.Spec.Mounts)
		}
		if req.Spec == nil || len(fds) != 1+nvol+req.Tasks || req.CgroupV2 != in.cgroupV2 && req.Tasks > 0 {
			reply(wire.CtlReply{Error: fmt.Sprintf("bad app-add request: %d descriptors", len(fds))})
			return
		}
		all := fds
		fds = nil // addApp takes them over
		if err := in.addApp(req.Spec, all[0], all[1:1+nvol], all[1+nvol:]); err != nil {
			reply(wire.CtlReply{Error: err.Error()})
			return
		}
		reply(wire.CtlReply{Done: true})
	case "app-start":
		pid, err := in.ctlStartApp(req.App)
		var xe *execError
		switch {
		case errors.As(err, &xe):
			reply(wire.CtlReply{Done: true, Code: xe.Code, Error: err.Error()})
		case err != nil:
			reply(wire.CtlReply{Error: err.Error()})
		default:
			reply(wire.CtlReply{Done: true, PID: pid})
		}
	case "app-stop":
		code, err := in.ctlStopApp(req.App, req.Timeout, req.Force)
		if err != nil {
			reply(wire.CtlReply{Error: err.Error()})
			return
		}
		reply(wire.CtlReply{Done: true, Code: code})
	case "app-rm":
		if err := in.ctlRemoveApp(req.App, req.Force); err != nil {
			reply(wire.CtlReply{Error: err.Error()})
			return
		}
		reply(wire.CtlReply{Done: true})
	default:
		reply(wire.CtlReply{Error: "unknown request " + req.Op})
	}
}

// enter runs an enter request's command and reports its status.
func (in *podInit) enter(c *net.UnixConn, req *wire.CtlRequest, pfds *[]int, reply func(wire.CtlReply, ...int)) {
	a := in.findApp(req.App)
	switch {
	case a == nil:
		reply(wire.CtlReply{Error: fmt.Sprintf("no app %q in the pod", req.App)})
		return
	case len(req.Args) == 0 || len(*pfds) != 3 && !req.TTY:
		reply(wire.CtlReply{Error: "bad enter request"})
		return
	}
	master := -1
	if req.TTY {
		m, slave, err := openPTY(a.root, req, a.app.UID)
		if err != nil {
			reply(wire.CtlReply{Error: err.Error()})
			return
		}
		master = m
		defer unix.Close(master)
		wire.CloseAll(*pfds)
		*pfds = []int{slave, slave, slave}
	}
	fds := *pfds
	env := req.Env
	if env == nil {
		env = a.app.Env
	}
	exited := make(chan unix.WaitStatus, 1)
	var join *appProc
	if a.app.OwnPIDNamespace {
		join = a // its PID namespace, and its /proc
	}
	p := &proc{
		join: join,
		app:  a.app, root: a.root, rootPath: a.rootPath, args: req.Args, env: env, files: fds,
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
			reply(wire.CtlReply{Done: true, Code: xe.Code}, master) // the message is in the pty
		} else {
			reply(wire.CtlReply{Done: true, Code: xe.Code})
		}
		return
	}
	in.log.Debug("enter", "app", a.app.Name, "pid", pid, "args", fmt.Sprint(req.Args))
	// Only the command holds the caller's files from here on.
	wire.CloseAll(uniq(fds))
	*pfds = nil
	if master >= 0 {
		reply(wire.CtlReply{PID: pid}, master)
	} else {
		reply(wire.CtlReply{PID: pid})
	}
	gone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, c) // returns when the caller hangs up
		close(gone)
	}()
	select {
	case ws := <-exited:
		code, _ := waitCode(ws)
		reply(wire.CtlReply{Done: true, Code: code})
	case <-gone:
		// The command leads a session and process group of its own: what
		// it started goes with it.
		unix.Kill(-pid, unix.SIGKILL)
		unix.Kill(pid, unix.SIGKILL)
		// The caller waits for the connection to close: by then the
		// command is reaped.
		select {
		case <-exited:
		case <-in.done:
		}
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
