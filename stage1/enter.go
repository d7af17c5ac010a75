package stage1

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/karman-project/karman/stage1/internal/wire"
	"github.com/karman-project/karman/stage1/poddir"
	"golang.org/x/sys/unix"
)

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
	req := &wire.CtlRequest{Op: "enter", App: app, Args: argv, Env: env, TTY: tty}
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
			fds = wire.ParseRights(oob[:oobn])
		}
		if err != nil || n == 0 {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, fmt.Errorf("enter: the pod ended before the command did: %v", err)
		}
		var r wire.CtlReply
		if err := json.Unmarshal(buf[:n], &r); err != nil {
			wire.CloseAll(fds)
			return 0, fmt.Errorf("enter: bad reply: %w", err)
		}
		if tty && relay == nil && len(fds) == 1 {
			relay = newPTYRelay(os.NewFile(uintptr(fds[0]), "pty"), stdin, stdout)
			fds = nil
		}
		wire.CloseAll(fds)
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

// dialCtl connects to the pod's control socket.
func dialCtl(podDir string) (*net.UnixConn, error) {
	var c *net.UnixConn
	err := wire.WithSocketPath(filepath.Join(podDir, poddir.CtlSocket), func(p string) error {
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
