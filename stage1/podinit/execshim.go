package podinit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/isolators"
	"github.com/karman-project/karman/stage1/poddir"
)

// The exec shim starts an app whose seccomp filter the init cannot load
// on the thread that forks it:
//
//   - an app with a filter of its own (--seccomp): a filter loaded on
//     the forking thread is in force from the fork on, for the Go runtime
//     code the thread still runs (the fork itself, a channel send, the
//     thread's exit); the default filter refuses nothing the runtime
//     uses, but an app's own list may (a retain list refuses futex unless
//     it names it; a remove list may name mmap);
//   - an app with --oom-score-adj: the value is per process, and set
//     by the shim before execve, so the app never runs with the init's;
//   - every confined app on cgroup v2: it is forked straight into its
//     cgroup with clone3 (CLONE_INTO_CGROUP), which every filter refuses
//     (clone3's flags cannot be inspected), so the forking thread has
//     none.
//
// Such an app is forked as `/proc/self/exe __stage1-exec PATH ARGV...`
// (the karman binary through the app's own /proc), chrooted, with its
// stdio and session, no_new_privs, but still root with every capability.
// The shim reads a shimSpec from fd 3 and, on its main thread, drops the
// bounding set to the app's capabilities, takes the app's groups, group
// and user, changes to its working directory, loads its filter and calls
// execve at once, as runc's init does. Holding every capability until
// then keeps the pod's other processes out of it: reading or writing
// another process's memory (/proc/PID/mem) needs a superset of its
// permitted capabilities, or CAP_SYS_PTRACE, so no confined app can tamper
// with the shim before its filter is in force. The app's filter must
// allow what follows it: execve (retain lists always do).

// shimSpec is what the shim applies before execve.
type shimSpec struct {
	UID     uint32   `json:"uid"`
	GID     uint32   `json:"gid"`
	Groups  []uint32 `json:"groups,omitempty"`
	Caps    []string `json:"caps"` // nil: the default set; empty: none (App.Caps)
	AllCaps bool     `json:"allCaps,omitempty"`
	Dir     string   `json:"dir"`
	// Env is the app's; the shim itself runs with an empty environment,
	// so that nothing of the image's (GODEBUG, say) steers its runtime.
	Env    []string `json:"env,omitempty"`
	Filter []byte   `json:"filter,omitempty"` // isolators.EncodeSeccomp
	// OOMScoreAdj, when set, is written to /proc/self/oom_score_adj
	// before execve, so the app never runs with the init's value.
	OOMScoreAdj *int `json:"oomScoreAdj,omitempty"`
	// MountProc: the shim is PID 1 of the app's own PID namespace, in a
	// mount namespace of its own, and mounts the /proc of that namespace
	// over the pod's, masked like every app's unless NoMasks.
	MountProc bool              `json:"mountProc,omitempty"`
	NoMasks   bool              `json:"noMasks,omitempty"`
	Paths     *poddir.PathRules `json:"paths,omitempty"`
	// NewPrivs: no_new_privs is off, so the filter is loaded while the
	// shim still has CAP_SYS_ADMIN, before it changes user; it must
	// allow what follows (setgroups, setgid, setuid, prctl, chdir).
	NewPrivs bool `json:"newPrivs,omitempty"`
}

const (
	// execShimPath is the karman binary as the app's root sees it.
	execShimPath = "/proc/self/exe"
	// execShimFD carries the shimSpec to the shim.
	execShimFD = 3
	// execShimStatusFD reports an execError back; EOF means the app runs.
	execShimStatusFD = 4
)

// needsExecShim tells whether app starts through the exec shim: when it
// has a filter of its own, or any filter on cgroup v2, where the thread
// that forks it must call clone3 (which every filter refuses) to start it
// inside its cgroup. An app with a PID namespace of its own always starts
// through it (see launch).
func needsExecShim(app *poddir.App, cgroupV2 bool) bool {
	if app.OOMScoreAdj != nil {
		return true // per process, set before execve
	}
	if app.Unconfined || app.Seccomp != nil && app.Seccomp.Mode == isolators.SeccompUnconfined {
		return false
	}
	return cgroupV2 || app.Seccomp != nil
}

// shimStart is one start through the shim, seen from the init: the
// shim's spec and its status pipe, which reaches EOF when the shim has
// exec'd the app (it is close-on-exec there) and otherwise carries an
// execError.
type shimStart struct {
	spec, statusR, statusW int
}

// newShimStart prepares a start through the shim; with mountProc the shim
// mounts the app's /proc (shimSpec.MountProc).
func newShimStart(app *poddir.App, dir string, env []string, mountProc bool) (*shimStart, error) {
	spec, err := specFile(app, dir, env, mountProc)
	if err != nil {
		return nil, err
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		unix.Close(spec)
		return nil, fmt.Errorf("pipe for the exec shim: %w", err)
	}
	return &shimStart{spec: spec, statusR: p[0], statusW: p[1]}, nil
}

// prepare turns the start of path into a start of the shim: its
// descriptors, no user, directory or environment (the shim takes the
// app's), and the command line to fork.
func (s *shimStart) prepare(attr *syscall.ProcAttr, path string, args []string) (string, []string) {
	attr.Files = append(attr.Files, uintptr(s.spec), uintptr(s.statusW))
	attr.Sys.Credential, attr.Dir, attr.Env = nil, "", []string{}
	return execShimPath, append([]string{"karman", poddir.CmdExec, path}, args...)
}

// wait waits until the shim has exec'd the app, or returns why it could
// not.
func (s *shimStart) wait() error {
	unix.Close(s.statusW)
	s.statusW = -1
	b, err := readAll(s.statusR)
	if err != nil {
		return fmt.Errorf("waiting for the exec shim: %w", err)
	}
	if len(b) == 0 {
		return nil
	}
	var xe execError
	if err := json.Unmarshal(b, &xe); err != nil {
		return fmt.Errorf("the exec shim failed: %s", b)
	}
	return &xe
}

func (s *shimStart) close() {
	for _, fd := range []int{s.spec, s.statusR, s.statusW} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// specFile returns a memfd holding the shim's spec, read from its start
// (a memfd rather than a pipe: the environment has no size limit that a
// pipe's buffer would hold before the shim reads it).
func specFile(app *poddir.App, dir string, env []string, mountProc bool) (int, error) {
	prog, err := appFilter(app)
	if err != nil {
		return -1, err
	}
	b, err := json.Marshal(shimSpec{
		UID: app.UID, GID: app.GID, Groups: app.GIDs, Caps: app.Caps, AllCaps: app.AllCaps,
		Dir: dir, Env: env, Filter: isolators.EncodeSeccomp(prog), OOMScoreAdj: app.OOMScoreAdj,
		MountProc: mountProc, NoMasks: app.NoMasks, Paths: app.Paths, NewPrivs: app.NewPrivs,
	})
	if err != nil {
		return -1, err
	}
	fd, err := unix.MemfdCreate("karman-exec-spec", unix.MFD_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("memfd for the exec shim: %w", err)
	}
	if _, err := fdWriter(fd).Write(b); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("writing the exec shim's spec: %w", err)
	}
	if _, err := unix.Seek(fd, 0, 0); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("writing the exec shim's spec: %w", err)
	}
	return fd, nil
}

// execShimMain is the shim: args are PATH ARGV...
func ExecShimMain(args []string) int {
	runtime.LockOSThread() // the main goroutine keeps the main thread
	if len(args) < 2 {
		fmt.Fprintf(os.Stderr, "karman: usage: %s PATH ARGV...\n", poddir.CmdExec)
		return poddir.ExitRuntimeError
	}
	path, argv := args[0], args[1:]
	// The status pipe closes when execve succeeds.
	unix.CloseOnExec(execShimStatusFD)
	err := execShim(path, argv) // returns only on failure
	var xe *execError
	if err == nil {
		err = errors.New("execve returned")
	}
	if !errors.As(err, &xe) {
		xe = &execError{Code: poddir.ExitRuntimeError, Path: path, Reason: err.Error()}
	}
	b, _ := json.Marshal(xe)
	fdWriter(execShimStatusFD).Write(b)
	return xe.Code
}

// execShim applies the spec on fd 3 to the calling thread and execs path:
// it only returns an error.
func execShim(path string, argv []string) error {
	b, err := readAll(execShimFD)
	unix.Close(execShimFD)
	if err != nil {
		return fmt.Errorf("reading the exec shim's spec: %w", err)
	}
	var spec shimSpec
	if err := json.Unmarshal(b, &spec); err != nil {
		return fmt.Errorf("the exec shim's spec: %w", err)
	}
	prog, err := isolators.DecodeSeccomp(spec.Filter)
	if err != nil {
		return err
	}
	// Everything execve needs is allocated before the filter is loaded.
	argv0, err := syscall.BytePtrFromString(path)
	if err != nil {
		return err
	}
	argvp, err := syscall.SlicePtrFromStrings(argv)
	if err != nil {
		return err
	}
	envp, err := syscall.SlicePtrFromStrings(spec.Env)
	if err != nil {
		return err
	}
	dir, err := syscall.BytePtrFromString(spec.Dir)
	if err != nil {
		return err
	}
	if spec.MountProc {
		if err := mountAppProc(spec.NoMasks, spec.Paths); err != nil {
			return err
		}
	}
	if spec.OOMScoreAdj != nil {
		// While the shim still has every capability: a value below the
		// current one needs CAP_SYS_RESOURCE.
		v := strconv.Itoa(*spec.OOMScoreAdj)
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(v), 0); err != nil {
			return fmt.Errorf("--oom-score-adj %s: %w (a value below karman's own needs CAP_SYS_RESOURCE)", v, err)
		}
	}
	// Per thread, this one: it is the one that calls execve.
	if err := dropBounding(&poddir.App{Caps: spec.Caps, AllCaps: spec.AllCaps}); err != nil {
		return err
	}
	if spec.NewPrivs && len(prog) > 0 {
		if err := isolators.InstallSeccomp(prog); err != nil {
			return err
		}
		prog = nil
	}
	groups := make([]uint32, len(spec.Groups))
	copy(groups, spec.Groups)
	var gp unsafe.Pointer
	if len(groups) > 0 {
		gp = unsafe.Pointer(&groups[0])
	}
	for _, c := range []struct {
		what   string
		nr     uintptr
		a1, a2 uintptr
	}{
		{"setgroups", unix.SYS_SETGROUPS, uintptr(len(groups)), uintptr(gp)},
		{"setgid", unix.SYS_SETGID, uintptr(spec.GID), 0},
		{"setuid", unix.SYS_SETUID, uintptr(spec.UID), 0},
		// A new user drops every capability, and the kernel makes the
		// process dumpable again where fs.suid_dumpable is not 0: not
		// dumpable, the pod's processes of that user stay out of it.
		{"prctl", unix.SYS_PRCTL, unix.PR_SET_DUMPABLE, 0},
		{"chdir", unix.SYS_CHDIR, uintptr(unsafe.Pointer(dir)), 0},
	} {
		if _, _, errno := syscall.RawSyscall(c.nr, c.a1, c.a2, 0); errno != 0 {
			if c.what == "chdir" {
				return &execError{Code: poddir.ExitCannotExec, Path: spec.Dir, Reason: "working directory: " + errno.Error()}
			}
			return fmt.Errorf("%s: %w", c.what, errno)
		}
	}
	runtime.KeepAlive(groups)
	if len(prog) > 0 {
		if err := isolators.InstallSeccomp(prog); err != nil {
			return err
		}
	}
	_, _, errno := syscall.RawSyscall(unix.SYS_EXECVE, uintptr(unsafe.Pointer(argv0)),
		uintptr(unsafe.Pointer(&argvp[0])), uintptr(unsafe.Pointer(&envp[0])))
	return execErrno(path, errno)
}

// mountAppProc mounts, on the /proc of the shim's root, a proc of the
// shim's PID namespace, with the masks and read-only paths every app has
// (maskPaths, the init's own). The shim is in the app's own mount
// namespace, whose mounts are private copies of the pod's, so none of
// this reaches the pod and all of it goes with the app.
func mountAppProc(noMasks bool, paths *poddir.PathRules) error {
	r, err := openRoot("/")
	if err != nil {
		return err
	}
	defer r.close()
	const nsx = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if err := r.mount("proc", "/proc", "proc", nsx, "", false); err != nil {
		return fmt.Errorf("the app's /proc: %w", err)
	}
	if noMasks {
		return nil
	}
	// The pod's empty directory is a mount of the pod's namespace, which
	// cannot be bound here: the directories are masked with empty
	// read-only tmpfs mounts of their own.
	if err := maskPaths(r, "/", "", paths); err != nil {
		return fmt.Errorf("the app's /proc: %w", err)
	}
	return nil
}

// readAll reads fd to its end.
func readAll(fd int) ([]byte, error) {
	var out []byte
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return out, nil
		}
		out = append(out, buf[:n]...)
	}
}
