// Package stage1 is how stage0 hands a pod to its supervisor and talks to
// it while it runs: Binary finds karman-stage1, Launch starts the
// supervisor on a prepared pod directory, Stop and Enter use the running
// pod's control socket. The programs are its subpackages, run from
// karman-stage1 (cmd/karman-stage1), whose main dispatches them from its
// multicall table:
//
//   - poddir: the contract with stage0, types, paths and checks only
//     (pod.json, the state files, the interface version, the command
//     lines);
//   - supervisor: the pod supervisor (__stage1-run);
//   - podinit: the pod's init (__stage1-init) and the exec shim
//     (__stage1-exec);
//   - internal/wire: what those three say to each other; internal/trim:
//     the memory trim of the two long-lived processes.
//
// This overview is the whole of stage1: namespaces, root filesystem,
// mounts, starting the apps, reaping, exit status and teardown.
//
// # Interface (version 6, poddir.InterfaceVersion)
//
// stage0 prepares a pod directory (pod.json, one rendering per app under
// App.Dir, a deferred overlay when App.Layers is set, the pod's network
// namespace when it has networks), opens the directory, takes
// flock(LOCK_EX) on it, makes the pod's cgroups (recording their path in
// state/cgroup first, and what stage1 needs of them in state/cgroups.json,
// see poddir.Cgroups) and calls Launch, which starts
//
//	karman-stage1 __stage1-run [--debug] [--lock-fd=N] PODDIR
//
// (poddir.BinaryName, found by Binary beside the karman binary or through
// $KARMAN_STAGE1; a missing one is an error, ErrNoBinary, before any of
// the pod is made). In the foreground Launch execs it in the calling
// process: the PID a shell or systemd started is the supervisor, and the
// pod's exit status is its exit status. Detached, it is a child of the
// caller in a session of its own, the lock its fd 3. That is the only
// difference: interactive pods, pods under a NOTIFY_SOCKET and detached
// ones are the same supervisor running the same code, what they differ in
// is in pod.json. karman-stage1 links this package and nothing heavier (no
// CLI, image store, registry client or cgroup library), so that the two
// processes which stay with a running pod, the supervisor and the init,
// start fast and hold little memory.
//
// The lock fd (default 3) keeps its number and is passed with --lock-fd:
// Launch does not move it to 3, because a Go program's fd 3 is usually its
// epoll descriptor. The supervisor holds the lock until the pod is gone
// (mounts and processes included); the kernel drops it when the
// supervisor dies, which is how list and status tell a running pod from
// an ended one. The pod directory's contract is package poddir: pod.json
// is checked once by every reader, in poddir.Load (the interface version,
// and what stage1 relies on, Pod.Validate), and everything stage1 writes
// in the pod directory is named by its constants:
// state/supervisor.pid, state/init.pid, state/apps/<app>.json (AppStatus),
// state/started, state/exit, state/finished, logs/<app>.log, and while the
// pod runs state/ctl.sock and state/notify.sock. State files are replaced
// atomically; a supervisor killed with SIGKILL leaves them incomplete.
//
// The pod's network is stage0's: for a pod with networks stage0 has made
// and configured a persistent network namespace (Pod.NetNS, a bind-mounted
// nsfs file) before stage1 starts. When the pod has ended and before it
// releases the lock, the supervisor runs Pod.Teardown with the pod
// directory appended, or, without one, unmounts and removes Pod.NetNS
// itself. stage1 imports no network code.
//
// The hidden entrypoints are "__stage1-run" (poddir.CmdRun, the supervisor),
// "__stage1-init" (poddir.CmdInit, the pod init, which takes no arguments) and
// "__stage1-exec" (poddir.CmdExec, the exec shim: apps with a
// seccomp filter of their own, and every confined app on cgroup v2, start
// through it). No package init() of stage1 changes the process: the main
// of karman-stage1 locks its main goroutine to the main thread, which the
// forks below require.
//
// # Process tree
//
//	karman-stage1 __stage1-run PODDIR   supervisor: host namespaces, original PID, holds the lock
//	└── karman-stage1 __stage1-init     pod init: PID 1 of new PID, mount, UTS, IPC, cgroup
//	    │                            namespaces; in Pod.NetNS, the host's (net=host)
//	    │                            or a new network namespace (net=none)
//	    ├── app 1                    chrooted into /apps/<name>, own session
//	    │                            (first the exec shim where needed, which execs the app)
//	    ├── app 2 ...
//	    ├── orphans of the apps      re-parented to the init, reaped by it
//	    └── enter sessions           spawned by the init on request
//
// The supervisor reads pod.json and forks the init at once (forkInit in
// package supervisor, the one place that does): from a goroutine locked to its thread, which
// joins the pod's own v1 cpu cgroups (Cgroups.Init) and Pod.NetNS with
// setns, forks /proc/self/exe with SysProcAttr.Cloneflags (no
// CLONE_NEWNET then) and returns to the host's network namespace. The
// init's parent-death signal follows that thread, which therefore goes
// back to the runtime's pool and lives as long as the supervisor; a
// thread that cannot return from the pod's namespace is ended (its
// goroutine exits locked), the init killed, and the start fails. The init
// is forked with syscall.ForkExec, not os/exec, whose first start in a
// process forks a test child first (the runtime's pidfd probe), and is
// reaped by PID. While the init's runtime starts, the supervisor prepares
// the state directory, the log pipes and its signal handlers. There is no
// other re-exec on the start path (the apps are forked by the init
// directly).
//
// The two talk over a SOCK_SEQPACKET socket pair, the init's fd 3, one
// JSON message per packet (package internal/wire): the boot message (pod directory,
// debug flag, and the write ends of each app's stdout and stderr pipes as
// SCM_RIGHTS) and the apps' cgroup files go down (descriptors beyond the
// 253 a packet carries follow in "fds" packets, so a pod may have any
// number of apps), stop and signal requests follow; log records, errors,
// "app started" (with SCM_CREDENTIALS, so that the kernel translates the
// app's PID into the supervisor's namespace: AppStatus.PID is a host PID),
// "app exited", "all apps started" and the pod's exit status come up.
// Nothing on the start path sleeps or polls.
//
// The init makes itself non-dumpable (CVE-2019-5736: nothing in the pod can
// open /proc/1/exe, the karman binary, or its memory) and sets its own
// parent-death signal to SIGKILL (Go's SysProcAttr.Pdeathsig cannot be
// used: Go checks getppid after setting it, which reads 0 in a new PID
// namespace); it also exits when the supervisor's end of the socket
// closes. A supervisor killed with SIGKILL therefore takes the init with it,
// and with the init every process of the pod (PID namespace) and every
// mount of the pod (mount namespace, including the overlays): nothing is
// left mounted in the host.
//
// # Filesystem: a pod root and chroot, not a mount namespace per app
//
// The init makes every mount private, mounts a tmpfs (the pod root) on
// PODDIR/podroot, and for each app mounts the overlay of its layers
// (overlay.Mount), binds it to /apps/<name> in the pod root and mounts in
// it /proc, a tmpfs /dev (null, zero, full, random, urandom, tty created
// with mknod or else bound from the host; a private devpts with ptmx;
// /dev/shm; /dev/mqueue; the /proc/self/fd links), a read-only sysfs (the
// host's /sys bound read-only if a pod in the host's network namespace may
// not mount one), /etc/hostname, /etc/hosts and /etc/resolv.conf, and the
// app's volumes (podinit/volume.go: the source resolved beneath Mount.SourceRoot
// when set, the target refused when it is the runtime's, the two joined by
// descriptor with open_tree and move_mount, read-only before attaching
// when asked). Every path inside an app is resolved with
// openat2(RESOLVE_IN_ROOT) and every mount goes through the descriptor of
// the resolved target, so an image's symlinks cannot lead a write or a
// mount out of the app's root. Then it pivot_roots into
// the pod root, detaches the host's root and makes the pod root read-only.
// From then on nothing of the host's filesystem is reachable from the pod.
//
// Each app is then started chrooted into /apps/<name>. One mount namespace
// per app (unshare + pivot_root in the child) would need a re-exec of a Go
// helper for every app and every enter, since Go cannot run code between
// fork and exec: a millisecond or more each, on the start path. With the
// pod root, chroot is enough to keep the host out: what an app could reach
// by breaking out of its chroot (with CAP_SYS_CHROOT, until the isolators
// drop it) is the pod root, which holds only the pod's own apps.
//
// The exception is an app with a PID namespace of its own
// (App.OwnPIDNamespace, --pid=app): its /proc must be a proc of that
// namespace, which only a process inside it can mount, so it pays for the
// re-exec. The init forks it with CLONE_NEWPID and CLONE_NEWNS through the
// exec shim (podinit/execshim.go), which, PID 1 of the new namespace and
// in a private copy of the pod's mounts, mounts that /proc over the
// pod's, masks it as every app's, and execs the app, which so is PID 1
// itself, as runc starts such a container; no reaper of karman's sits in
// between. The mount namespace goes with the app's last process. An enter
// session into such an app is forked from a thread that has joined the
// app's mount and PID namespaces (setns on a pidfd).
//
// # Apps
//
// Args[0] is looked up in the PATH of the app's environment inside its
// root (default /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
// unless it holds a slash. The app runs with its UID, GID and additional
// GIDs (setgroups, setgid, setuid), umask 022, in its own session, in
// WorkingDir ("/" when empty), which is created (root-owned, 0755) when
// the image lacks it, as runc and Docker do. A command that cannot be
// started ends the app at once with 127 (not found, or a missing script
// interpreter) or 126 (not executable, a directory, permission denied, a
// working directory that cannot be made) and one line on its stderr:
//
//	karman: app web: /usr/bin/nope: not found
//
// Stdin is the app's /dev/null. Stdout and stderr are pipes that the
// supervisor copies, chunk by chunk and so in order within each stream, to
// its own stdout and stderr (journald under systemd), to the app's attach
// sessions and, one record per line in the CRI's log format
// (poddir.AppendLogRecord), to logs/<app>.log. An app added with
// App.Stdin has a pipe as its stdin instead, whose write end the
// supervisor keeps for attach sessions (closed when the first session's
// stdin ends with App.StdinOnce); one added with App.TTY has a
// pseudo-terminal of its own devpts as stdin, stdout and stderr, which
// the init opens and whose master it hands to the supervisor, which
// relays it the same way (its output logged as stdout).
//
// # Attach
//
// The supervisor listens on state/attach.sock (SOCK_SEQPACKET; the
// protocol is in internal/wire/attach.go): a session names an app and
// the streams it wants, gets the app's output from then on (a session
// that falls 64 chunks behind is dropped; the log keeps everything) and
// writes to its stdin, or resizes its terminal. Sessions end when the
// app's output ends. With Pod.Interactive the single app gets the
// supervisor's stdin, stdout and stderr directly, no pty in between, and
// nothing is logged; if stdin is a terminal the app's process group is
// made its foreground group (so ^C and ^Z reach the app rather than the
// supervisor), and the supervisor takes the terminal back at the end.
//
// # Exit status
//
// The init reaps every child (wait4(-1) on SIGCHLD). An app's status is its
// exit code, or 128+N when a signal N killed it. The pod's status is that
// of the first app, in pod order, whose status is not 0, and 0 when all
// are 0; so a single app's status is the pod's. The pod ends when every app
// has ended; what is left in it (orphans, enter sessions) dies with the
// init. A failure of karman itself ends the pod with 254 and one line
// "karman: ..." on stderr. state/exit holds the status, state/finished
// the time.
//
// # Signals and stop
//
// SIGTERM or SIGINT to the supervisor stops the pod: SIGTERM to every app,
// then SIGKILL to everything in the pod after Pod.StopTimeout
// (DefaultStopTimeout when not positive); a second SIGTERM or SIGINT kills
// at once. SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH and SIGQUIT are forwarded to
// the apps; SIGPIPE is ignored so that a closed stdout does not end the
// pod. Stop does the same from another process through the control
// socket, and falls back to signalling the supervisor (state/supervisor.pid,
// trusted only while the pod lock is held) when the init is not listening.
//
// # Readiness
//
// When $NOTIFY_SOCKET is set (a path, or an abstract name starting with
// '@'), the supervisor sends READY=1 once every app was started, and
// STOPPING=1 when asked to stop. With Pod.NotifyApp it sends no READY=1:
// it binds state/notify.sock instead, the init bind-mounts that socket into
// every app at /run/notify.sock and sets NOTIFY_SOCKET=/run/notify.sock in
// the apps' environment, and the supervisor relays each datagram to
// $NOTIFY_SOCKET. Relaying is required rather than a convenience: systemd
// (NotifyAccess=main) only accepts notifications from the unit's main PID,
// which is the supervisor, and an abstract socket cannot be reached from
// the pod's network namespace.
//
// # Enter
//
// setns(CLONE_NEWNS) is impossible from a multi-threaded Go process, so
// Enter does not join the pod's namespaces itself. The init, which is in
// all of them and sees every app's root, listens on state/ctl.sock; Enter
// sends the command, its environment and its stdin, stdout and stderr
// (SCM_RIGHTS: the caller's files, or pipes Enter relays to any reader and
// writer), and the init starts it exactly like an app (chroot, cgroup,
// isolation, the app's user and groups and working directory, own
// session) and replies with its exit status (127, 126, 128+N as for
// apps). With a tty the init opens the pseudo-terminal in the app's own
// devpts, makes it the command's controlling terminal and sends the
// master back; Enter relays it to the caller's streams (a terminal in raw
// mode) and sets its size on SIGWINCH or from EnterOptions.Resize.
// Closing the connection (a cancelled context, a deadline) kills the
// command's process group.
//
// # Mutable pods
//
// A pod with Pod.KeepAlive (karman run --keep-alive, or --no-apps, a pod
// of no apps) runs until it is stopped, not until its last app ended.
// The apps of any running pod change through the app requests of the
// control socket, which stage0 sends one at a time per pod (its app lock)
// and the init checks again on its main loop, which owns the apps' run
// state (AddApp, StartApp, StopApp, RemoveApp in this package):
//
//   - "app-add" carries the app (a poddir.App) and, as SCM_RIGHTS, what
//     only the host's mount namespace has: a detached mount of the app's
//     root (its overlay made with fsopen and fsmount, or an open_tree clone
//     of a copied root), a detached clone of each volume's source, and
//     the app's cgroup files, which stage0 made. The init makes the pod
//     root writable and mounts a /proc of the pod at its root, attaches
//     the root at /apps/<name> with move_mount and mounts the rest as at
//     boot (fillApp), then makes the root read-only again without /proc.
//     Any failure unmounts what was attached; the app is then created,
//     not started, and stage0 records it in pod.json.
//   - "app-start" starts a created or exited app: the init asks the
//     supervisor for its output pipes (MsgPipes), whose copies append to
//     logs/<app>.log, and starts it as at boot; MsgStarted carries its
//     restart count, and the supervisor begins a new AppStatus.
//   - "app-stop" sends SIGTERM, SIGKILL to the app's process group after
//     the timeout, and replies with its status once it has exited.
//   - "app-rm" refuses a running app unless forced (killed first), then
//     unmounts /apps/<name> with all below it and tells the supervisor
//     (MsgRemoved), which drops its status; stage0 removes its cgroup,
//     rendering, lease, log and pod.json entry.
//
// # Resources
//
// After the start the supervisor and the init give back the pages of the
// binary's read-only mappings that start-up touched and free heap pages
// (package internal/trim). Both run without allocation sampling, and their
// long-lived buffers are small (maxPacket, teeBuffer). See docs/pods.md for what a pod costs.
package stage1
