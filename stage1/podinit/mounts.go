package podinit

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/image/overlay"
	"github.com/karman-project/karman/isolators"
	"github.com/karman-project/karman/stage1/internal/wire"
	"github.com/karman-project/karman/stage1/poddir"
)

// appsDir holds the apps' roots inside the pod root: /apps/<name>.
const appsDir = "/apps"

// setup builds the pod's world, in the init's new mount namespace:
// private mounts, host name, loopback, the control socket, a tmpfs root
// holding every app's rootfs with its /proc, /dev, /sys, /etc files and
// mounts, then pivot_root into it, so that nothing of the host's
// filesystem is left reachable.
func (in *podInit) setup() error {
	// Volumes that propagate are cloned while the mounts of their
	// sources are still the peers of the host's (see attachVolume).
	if err := in.clonePropagating(); err != nil {
		return err
	}
	// Nothing we mount may propagate to the host, and the host's later
	// mounts need not reach us.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.Sethostname([]byte(in.hostname())); err != nil {
		return fmt.Errorf("set host name: %w", err)
	}
	// In the pod's own namespaces, through the /proc still in view.
	for k, v := range in.pod.Sysctls {
		if err := isolators.CheckSysctl(k, in.pod.Net == "host"); err != nil {
			return err
		}
		if err := os.WriteFile(isolators.SysctlPath(k), []byte(v), 0); err != nil {
			return fmt.Errorf("--sysctl %s=%s: %w", k, v, err)
		}
	}
	netns := in.pod.Net != "host"
	// Loopback and the control socket (bound while the pod directory is
	// still reachable) are set up beside the mounts.
	side := make(chan error, 1)
	go func() {
		if netns {
			if err := loopbackUp(); err != nil {
				side <- err
				return
			}
		}
		side <- in.listenCtl()
	}()
	podRoot := filepath.Join(in.dir, poddir.PodRoot)
	err := in.mountApps(podRoot, netns)
	if serr := <-side; err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	if err := pivot(podRoot); err != nil {
		return err
	}
	in.empty = filepath.Join("/", emptyDir) // for apps added later
	for _, a := range in.apps {
		a.rootPath = filepath.Join(appsDir, a.app.Name)
		if a.root, err = openRoot(a.rootPath); err != nil {
			return err
		}
	}
	return nil
}

// volKey names an app's volume: the app, the index in its Mounts.
type volKey struct {
	app string
	i   int
}

// clonePropagating clones the source of every volume with rslave or
// rshared propagation, while the init's mounts are still the peers (or
// slaves) of the host's: a clone stays in its source's peer group, which
// the init's making every mount private then leaves it in.
func (in *podInit) clonePropagating() error {
	for _, a := range in.pod.Apps {
		for i, m := range a.Mounts {
			if m.Propagation != poddir.PropagationSlave && m.Propagation != poddir.PropagationShared {
				continue
			}
			src, err := poddir.OpenSource(m)
			if err != nil {
				return err
			}
			tree, err := unix.OpenTree(src, "", unix.OPEN_TREE_CLONE|unix.O_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
			unix.Close(src)
			if err != nil {
				return fmt.Errorf("volume %s: clone the mount: %w", m.Source, err)
			}
			if in.propagating == nil {
				in.propagating = map[volKey]int{}
			}
			in.propagating[volKey{a.Name, i}] = tree
		}
	}
	return nil
}

// mountApps mounts the pod root and every app in it.
func (in *podInit) mountApps(podRoot string, netns bool) error {
	if err := unix.Mount("tmpfs", podRoot, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=755,size=1m"); err != nil {
		return fmt.Errorf("mount pod root: %w", err)
	}
	if err := os.Mkdir(filepath.Join(podRoot, appsDir), 0o755); err != nil {
		return err
	}
	// One empty read-only directory that every app's masked directories
	// are bind mounts of (a bind keeps the read-only flag of its source).
	in.empty = filepath.Join(podRoot, emptyDir)
	if err := os.Mkdir(in.empty, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", in.empty, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0,mode=555"); err != nil {
		return fmt.Errorf("mount the empty directory: %w", err)
	}
	for i := range in.pod.Apps {
		a := &appProc{app: &in.pod.Apps[i], stdout: -1, stderr: -1, stdin: -1}
		in.apps = append(in.apps, a)
		if err := in.mountApp(a.app, filepath.Join(podRoot, appsDir, a.app.Name), netns); err != nil {
			return fmt.Errorf("app %s: %w", a.app.Name, err)
		}
	}
	return nil
}

// listenCtl binds the control socket in the pod's state directory while
// that is still reachable.
func (in *podInit) listenCtl() error {
	path := filepath.Join(in.dir, poddir.CtlSocket)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return wire.WithSocketPath(path, func(p string) error {
		l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: p, Net: "unixpacket"})
		if err != nil {
			return fmt.Errorf("control socket: %w", err)
		}
		l.SetUnlinkOnClose(false) // unreachable after the pivot; the supervisor removes it
		in.ctl = l
		return os.Chmod(p, 0o600)
	})
}

// mountApp mounts app a's rootfs at target with everything in it.
func (in *podInit) mountApp(a *poddir.App, target string, netns bool) error {
	dir := filepath.Join(in.dir, a.Dir)
	if len(a.Layers) > 0 {
		if err := overlay.Mount(dir, a.Layers); err != nil {
			return err
		}
	}
	if err := os.Mkdir(target, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(filepath.Join(dir, "rootfs"), target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind rootfs: %w", err)
	}
	return in.fillApp(a, target, netns, nil)
}

// fillApp mounts in app a's root, mounted at target, its /proc, /dev,
// /sys, /etc files and volumes. vols, for an app added to the running pod
// (addApp), are the detached clones of its volumes' sources, one per
// Mount, which stage0 made; nil at boot, where the init opens them itself.
func (in *podInit) fillApp(a *poddir.App, target string, netns bool, vols []int) error {
	r, err := openRoot(target)
	if err != nil {
		return err
	}
	defer r.close()
	const nsx = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if err := r.mount("proc", "/proc", "proc", nsx, "", false); err != nil {
		return err
	}
	if err := setupDev(r); err != nil {
		return err
	}
	sysRO := uintptr(unix.MS_RDONLY)
	if a.Privileged {
		sysRO = 0
	}
	if err := makeDevices(r, a.Devices); err != nil {
		return err
	}
	if err := r.mount("sysfs", "/sys", "sysfs", nsx|sysRO, "", false); err != nil {
		// A pod in the host's network namespace may not be allowed a
		// sysfs of its own: show the host's, read-only.
		if netns {
			return err
		}
		if err := r.mount("/sys", "/sys", "", unix.MS_BIND|unix.MS_REC, "", false); err != nil {
			return err
		}
		if !a.Privileged {
			if err := r.remountRO("/sys", nsx); err != nil {
				return err
			}
		}
	}
	hn := in.hostname()
	hosts := in.pod.Hosts
	if hosts == "" {
		hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + hn + "\n"
	}
	files := map[string]string{"/etc/hostname": hn + "\n", "/etc/hosts": hosts}
	if in.pod.ResolvConf != "" {
		files["/etc/resolv.conf"] = in.pod.ResolvConf
	}
	for name, content := range files {
		if err := r.writeFile(name, []byte(content), 0o644); err != nil {
			return err
		}
	}
	for i, m := range a.Mounts {
		var err error
		key := volKey{a.Name, i}
		switch tree, ok := in.propagating[key]; {
		case vols != nil:
			err = attachVolume(r, m, vols[i])
		case ok:
			err = attachVolume(r, m, tree)
			unix.Close(tree)
			delete(in.propagating, key)
		default:
			err = bindMount(r, m)
		}
		if err != nil {
			return err
		}
	}
	if in.notify && vols == nil {
		if err := r.mount(filepath.Join(in.dir, poddir.NotifySocket), poddir.AppNotifySocket, "", unix.MS_BIND, "", true); err != nil {
			return fmt.Errorf("notify socket: %w", err)
		}
	}
	// Last, so that they cover what was mounted and written before.
	if !a.NoMasks {
		if err := maskPaths(r, target, in.empty, a.Paths); err != nil {
			return err
		}
	}
	if a.ReadonlyRootfs {
		// The app's own root only: /proc, /dev, volumes keep theirs.
		if err := unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("read-only root: %w", err)
		}
	}
	return nil
}

// devices are created in each app's /dev (character devices, mode 0666).
var devices = []struct {
	name         string
	major, minor uint32
}{
	{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
}

// setupDev mounts /dev as a tmpfs with the usual devices, a private
// devpts, /dev/shm, /dev/mqueue and the /proc/self/fd links.
func setupDev(r *root) error {
	if err := r.mount("tmpfs", "/dev", "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, "mode=755,size=65536k", false); err != nil {
		return err
	}
	dev, err := r.openat("/dev", unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer unix.Close(dev)
	for _, d := range devices {
		// The umask is 0 during the setup.
		err := unix.Mknodat(dev, d.name, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor)))
		if err == nil {
			// An app added to a running pod is mounted under the
			// apps' umask (022).
			err = unix.Fchmodat(dev, d.name, 0o666, 0)
		}
		if errors.Is(err, unix.EPERM) {
			// No mknod here (a user namespace): bind the host's node.
			err = r.mount("/dev/"+d.name, "/dev/"+d.name, "", unix.MS_BIND, "", true)
		}
		if err != nil {
			return fmt.Errorf("/dev/%s: %w", d.name, err)
		}
	}
	if err := r.mount("devpts", "/dev/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5", false); err != nil {
		return err
	}
	if err := r.mount("shm", "/dev/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k", false); err != nil {
		return err
	}
	// The pod has its own IPC namespace; a kernel without POSIX message
	// queues just has no /dev/mqueue.
	if err := r.mount("mqueue", "/dev/mqueue", "mqueue", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "", false); err != nil && !errors.Is(err, unix.ENODEV) {
		return err
	}
	for name, target := range map[string]string{
		"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	} {
		if err := unix.Symlinkat(target, dev, name); err != nil {
			return fmt.Errorf("/dev/%s: %w", name, err)
		}
	}
	return nil
}

// makeDevices makes the app's device nodes (App.Devices) in its /dev, with
// their owners and modes.
func makeDevices(r *root, devs []poddir.Device) error {
	for _, d := range devs {
		mode := uint32(unix.S_IFCHR)
		if d.Type == "b" {
			mode = unix.S_IFBLK
		}
		parent, err := r.mkdirAll(filepath.Dir(d.Path), 0o755)
		if err != nil {
			return fmt.Errorf("device %s: %w", d.Path, err)
		}
		name := filepath.Base(d.Path)
		err = unix.Mknodat(parent, name, mode|d.Mode, int(unix.Mkdev(d.Major, d.Minor)))
		if errors.Is(err, unix.EEXIST) {
			// Listed twice, or a node of the defaults (/dev/null): the
			// last word is the app's.
			if err = unix.Unlinkat(parent, name, 0); err == nil {
				err = unix.Mknodat(parent, name, mode|d.Mode, int(unix.Mkdev(d.Major, d.Minor)))
			}
		}
		if err == nil {
			err = unix.Fchownat(parent, name, int(d.UID), int(d.GID), unix.AT_SYMLINK_NOFOLLOW)
		}
		if err == nil {
			err = unix.Fchmodat(parent, name, d.Mode, 0)
		}
		unix.Close(parent)
		if err != nil {
			return fmt.Errorf("device %s: %w", d.Path, err)
		}
	}
	return nil
}

// pivot makes dir the root of the mount namespace and drops the host's
// root, then makes the pod root itself read-only.
func pivot(dir string) error {
	if err := unix.Chdir(dir); err != nil {
		return err
	}
	// pivot_root(".", ".") stacks the old root on top of the new one;
	// detaching it leaves the new root alone, with no put_old directory.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the host's root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	const flags = unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if err := unix.Mount("", "/", "", flags, ""); err != nil {
		return fmt.Errorf("pod root read-only: %w", err)
	}
	return nil
}

// loopbackUp brings up "lo" in the pod's own network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}
