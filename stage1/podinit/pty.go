package podinit

import (
	"fmt"

	"github.com/karman-project/karman/stage1/internal/wire"
	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal in the app's own devpts (its
// /dev/ptmx), so that the command's tty has a name inside the pod, and
// gives the slave to uid. It returns the master and the slave.
func openPTY(r *root, req *wire.CtlRequest, uid uint32) (master, slave int, err error) {
	master, err = r.openat("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY)
	if err != nil {
		return -1, -1, fmt.Errorf("open a pty: %w", err)
	}
	fail := func(err error) (int, int, error) {
		unix.Close(master)
		return -1, -1, fmt.Errorf("pty: %w", err)
	}
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return fail(err)
	}
	s, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(master), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		return fail(errno)
	}
	slave = int(s)
	unix.Fchown(slave, int(uid), -1)
	if req.Rows > 0 && req.Cols > 0 {
		unix.IoctlSetWinsize(master, unix.TIOCSWINSZ, &unix.Winsize{Row: req.Rows, Col: req.Cols})
	}
	return master, slave, nil
}
