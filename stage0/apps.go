package stage0

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/karman-project/karman/image/overlay"
	"github.com/karman-project/karman/image/rootfs"
	"github.com/karman-project/karman/internal/lockfile"
	"github.com/karman-project/karman/isolators/cgroups"
	"github.com/karman-project/karman/network"
	"github.com/karman-project/karman/stage1"
	"github.com/karman-project/karman/stage1/poddir"
	"golang.org/x/sys/unix"
)

// The apps of a running pod: added, started (again), stopped, removed and
// listed while the pod runs (docs/pods.md, "Mutable pods"). Every call
// takes the pod's app lock (appsLock), so that app commands on one pod
// run one at a time, and leaves nothing of a request that failed half-way.

// App states, as AppInfo.State says them.
const (
	AppCreated = "created" // added, never started
	AppRunning = "running"
	AppExited  = "exited"
)

// AddAppOptions are how an app added to a running pod is fetched and
// isolated; the rest is the pod's.
type AddAppOptions struct {
	PullPolicy                                   string // new (default), update, never
	InsecureHTTP, InsecureTLS, InsecureImage     bool
	InsecureCaps, InsecurePaths, InsecureSeccomp bool
}

// appsLock is the file whose lock serializes the app commands on a pod
// (the pod directory's own lock is the supervisor's).
const appsLock = "state/apps.lock"

// runningPod finds the pod uuid, refuses one that is not running (what
// says what to do then) and takes its app lock.
func (r *Runtime) runningPod(ctx context.Context, uuid, what string) (pod, *poddir.Pod, *lockfile.Lock, error) {
	p, err := r.find(uuid)
	if err != nil {
		return pod{}, nil, nil, err
	}
	if s := p.state(); s != Running {
		return pod{}, nil, nil, fmt.Errorf("%s: pod %s is %s, not running: %w; start a pod to add apps to with `karman run --no-apps`", what, p.uuid, s, ErrState)
	}
	lock, err := lockfile.Acquire(ctx, filepath.Join(p.path, appsLock), true)
	if err != nil {
		return pod{}, nil, nil, fmt.Errorf("%s: pod %s: %w", what, p.uuid, err)
	}
	pd, err := poddir.Load(p.path)
	if err == nil && p.state() != Running {
		err = fmt.Errorf("pod %s ended: %w", p.uuid, ErrState)
	}
	if err != nil {
		lock.Unlock()
		return pod{}, nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	return p, pd, lock, nil
}

// AddApp prepares the app as in a pod's creation (its image fetched per
// the pull policy, its rendering, its cgroup with its limits), has the
// running pod's init mount it in the pod, and records it in pod.json,
// created and not started (StartApp starts it). It returns the app's
// name. A failure at any step undoes the steps before it.
func (r *Runtime) AddApp(ctx context.Context, uuid string, as AppSpec, o AddAppOptions) (_ string, err error) {
	const what = "app add"
	p, pd, lock, err := r.runningPod(ctx, uuid, what)
	if err != nil {
		return "", err
	}
	defer lock.Unlock()
	switch {
	case pd.Interactive:
		return "", fmt.Errorf("%s: pod %s is interactive, which has exactly one app: %w", what, p.uuid, ErrState)
	case pd.NotifyApp:
		return "", fmt.Errorf("%s: pod %s hands its notify socket to its apps (--notify-app), which added apps cannot get: %w; start the pod without --notify-app", what, p.uuid, ErrState)
	}
	net := network.None
	if pd.Net == network.Host {
		net = network.Host
	}
	spec := PodSpec{
		Apps: []AppSpec{as}, Net: net, KeepAlive: true, PullPolicy: o.PullPolicy,
		InsecureHTTP: o.InsecureHTTP, InsecureTLS: o.InsecureTLS, InsecureImage: o.InsecureImage,
		InsecureCaps: o.InsecureCaps, InsecurePaths: o.InsecurePaths, InsecureSeccomp: o.InsecureSeccomp,
	}
	if err := spec.Validate(); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if err := checkVolumes(spec); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	as = spec.Apps[0]
	if slices.ContainsFunc(pd.Apps, func(a poddir.App) bool { return a.Name == as.Name }) {
		return "", fmt.Errorf("%s: pod %s has an app named %s already: choose another name with --name", what, p.uuid, as.Name)
	}
	dir := filepath.Join(p.path, "apps", as.Name)
	if _, err := os.Lstat(dir); err == nil {
		return "", fmt.Errorf("%s: pod %s has a directory apps/%s left by an app not recorded in it: remove the app with `karman app rm --force` first", what, p.uuid, as.Name)
	}
	app, err := r.prepareApp(ctx, p, spec, as)
	if err != nil {
		rootfs.Remove(r.images, dir, leaseID(p.uuid, as.Name))
		return "", fmt.Errorf("%s: app %s: %w", what, as.Name, err)
	}
	var cleanup []func() error
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				if cerr := cleanup[i](); cerr != nil {
					r.log.Warn("undoing app add; `karman gc` of the pod removes what is left", "pod", p.uuid, "app", as.Name, "err", cerr)
				}
			}
		}
	}()
	cleanup = append(cleanup, func() error { return rootfs.Remove(r.images, dir, leaseID(p.uuid, as.Name)) })
	files, closeFiles, err := r.addAppCgroup(p, pd, &app, &cleanup)
	defer closeFiles()
	if err != nil {
		return "", fmt.Errorf("%s: app %s: %w", what, as.Name, err)
	}
	if files.Root, err = appRootMount(filepath.Join(p.path, app.Dir), app.Layers); err != nil {
		return "", fmt.Errorf("%s: app %s: %w", what, as.Name, err)
	}
	defer unix.Close(files.Root)
	for _, m := range app.Mounts {
		fd, err := volumeClone(m)
		if err != nil {
			return "", fmt.Errorf("%s: app %s: %w", what, as.Name, err)
		}
		defer unix.Close(fd)
		files.Volumes = append(files.Volumes, fd)
	}
	if err := stage1.AddApp(ctx, p.path, &app, files); err != nil {
		return "", fmt.Errorf("%s: app %s: %w", what, as.Name, err)
	}
	cleanup = append(cleanup, func() error { return stage1.RemoveApp(context.Background(), p.path, app.Name, true) })
	pd.Apps = append(pd.Apps, app)
	if err := poddir.Save(p.path, pd); err != nil {
		return "", fmt.Errorf("%s: app %s: record it in pod.json: %w", what, as.Name, err)
	}
	r.log.Debug("app added", "pod", p.uuid, "app", app.Name)
	return app.Name, nil
}

// addAppCgroup makes the app's cgroup in the pod's and records it in
// poddir.CgroupsFile; it returns the files the init starts the app into,
// open, and what closes them. What it made is undone by cleanup's
// functions, which it appends.
func (r *Runtime) addAppCgroup(p pod, pd *poddir.Pod, app *poddir.App, cleanup *[]func() error) (stage1.AddAppFiles, func(), error) {
	var files stage1.AddAppFiles
	var open []int
	closeAll := func() {
		for _, fd := range open {
			unix.Close(fd)
		}
	}
	b, err := os.ReadFile(filepath.Join(p.path, poddir.CgroupFile))
	if errors.Is(err, os.ErrNotExist) {
		return files, closeAll, nil // a pod without cgroups
	}
	if err != nil {
		return files, closeAll, err
	}
	var cg poddir.Cgroups
	if err := poddir.ReadJSON(filepath.Join(p.path, poddir.CgroupsFile), &cg); err != nil {
		return files, closeAll, fmt.Errorf("the pod's cgroups: %w", err)
	}
	if cg.V2 {
		if err := poddir.CheckV2Limits([]poddir.App{*app}); err != nil {
			return files, closeAll, err
		}
	}
	podCg := strings.TrimSpace(string(b))
	appCg, err := cgroups.OpenPod(podHierarchy(cg), podCg).AddApp(app.Name, appResources(*app))
	*cleanup = append(*cleanup, func() error { return cgroups.OpenPod(cgroups.Auto, path.Join(podCg, app.Name)).Delete() })
	if err != nil {
		return files, closeAll, err
	}
	ac := poddir.AppCgroup{OOM: appCg.OOMFile(), Dir: appCg.Dir()}
	files.CgroupV2 = cg.V2
	if cg.V2 {
		fd, err := unix.Open(ac.Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return files, closeAll, fmt.Errorf("the app's cgroup: %w", err)
		}
		open = append(open, fd)
	} else {
		if ac.Tasks, err = appCg.TaskFiles(); err != nil {
			return files, closeAll, err
		}
		for _, t := range ac.Tasks {
			fd, err := unix.Open(t, unix.O_WRONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return files, closeAll, fmt.Errorf("the app's cgroup: %w", &os.PathError{Op: "open", Path: t, Err: err})
			}
			open = append(open, fd)
		}
	}
	files.Tasks = open
	if cg.Apps == nil {
		cg.Apps = map[string]poddir.AppCgroup{}
	}
	cg.Apps[app.Name] = ac
	if err := poddir.WriteCgroups(p.path, cg); err != nil {
		return files, closeAll, err
	}
	*cleanup = append(*cleanup, func() error { return forgetAppCgroup(p.path, app.Name) })
	return files, closeAll, nil
}

// forgetAppCgroup removes app's entry from the pod's CgroupsFile.
func forgetAppCgroup(podDir, app string) error {
	var cg poddir.Cgroups
	if err := poddir.ReadJSON(filepath.Join(podDir, poddir.CgroupsFile), &cg); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	delete(cg.Apps, app)
	return poddir.WriteCgroups(podDir, cg)
}

// appRootMount returns a detached mount of the app's root filesystem,
// which the init attaches in the pod: the overlay of its layers on its
// rendering dir, or a clone of dir/rootfs, a copy.
func appRootMount(dir string, layers []string) (int, error) {
	if len(layers) > 0 {
		return overlay.Detached(dir, layers)
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, filepath.Join(dir, "rootfs"), unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return -1, fmt.Errorf("clone the app's root: %w", err)
	}
	return fd, nil
}

// volumeClone returns a detached clone of m's source, opened as the init
// opens a volume's source at boot (poddir.OpenSource).
func volumeClone(m poddir.Mount) (int, error) {
	src, err := poddir.OpenSource(m)
	if err != nil {
		return -1, err
	}
	defer unix.Close(src)
	fd, err := unix.OpenTree(src, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	if err != nil {
		return -1, fmt.Errorf("volume %s: clone the mount: %w", m.Source, err)
	}
	return fd, nil
}

// appByName finds app in pd, or says how to find the apps.
func appByName(p pod, pd *poddir.Pod, app, what string) (*poddir.App, error) {
	for i := range pd.Apps {
		if pd.Apps[i].Name == app {
			return &pd.Apps[i], nil
		}
	}
	return nil, fmt.Errorf("%s: pod %s has no app %q: %w; see `karman app list %s`", what, p.uuid, app, ErrNotFound, p.uuid)
}

// StartApp starts the app of a running pod, for the first time after
// AddApp or again after it exited (its restart count grows by one). A
// command that cannot be started is a *stage1.StartError.
func (r *Runtime) StartApp(ctx context.Context, uuid, app string) error {
	const what = "app start"
	p, pd, lock, err := r.runningPod(ctx, uuid, what)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	if _, err := appByName(p, pd, app, what); err != nil {
		return err
	}
	if _, err := stage1.StartApp(ctx, p.path, app); err != nil {
		return fmt.Errorf("%s: pod %s: %w", what, p.uuid, err)
	}
	return nil
}

// StopApp stops the app of a running pod: SIGTERM, SIGKILL after timeout
// (the pod's stop timeout when not positive), at once with force; it
// returns the app's exit status once it has ended. The pod goes on
// (unless it is not kept alive and this was its last running app).
func (r *Runtime) StopApp(ctx context.Context, uuid, app string, timeout time.Duration, force bool) (int, error) {
	const what = "app stop"
	p, pd, lock, err := r.runningPod(ctx, uuid, what)
	if err != nil {
		return 0, err
	}
	defer lock.Unlock()
	if _, err := appByName(p, pd, app, what); err != nil {
		return 0, err
	}
	code, err := stage1.StopApp(ctx, p.path, app, timeout, force)
	if err != nil {
		return 0, fmt.Errorf("%s: pod %s: %w", what, p.uuid, err)
	}
	return code, nil
}

// RemoveApp removes the app from a running pod: the init unmounts it, and
// its cgroup, rendering, lease, log, status and pod.json entry go. A
// running app is refused unless force, which kills it first.
func (r *Runtime) RemoveApp(ctx context.Context, uuid, app string, force bool) error {
	const what = "app rm"
	p, pd, lock, err := r.runningPod(ctx, uuid, what)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	if _, err := appByName(p, pd, app, what); err != nil {
		// With force, what an app add killed half-way left (its
		// rendering, cgroup, maybe its mount in the pod) goes too.
		if _, serr := os.Lstat(filepath.Join(p.path, "apps", app)); !force || !validAppName(app) || serr != nil {
			return err
		}
		if err := stage1.RemoveApp(ctx, p.path, app, true); err != nil && !errors.Is(err, stage1.ErrRefused) {
			return fmt.Errorf("%s: pod %s: %w", what, p.uuid, err)
		}
	} else if err := stage1.RemoveApp(ctx, p.path, app, force); err != nil {
		return fmt.Errorf("%s: pod %s: %w", what, p.uuid, err)
	}
	pd.Apps = slices.DeleteFunc(pd.Apps, func(a poddir.App) bool { return a.Name == app })
	errs := []error{poddir.Save(p.path, pd), forgetAppCgroup(p.path, app)}
	if b, err := os.ReadFile(filepath.Join(p.path, poddir.CgroupFile)); err == nil {
		errs = append(errs, cgroups.OpenPod(cgroups.Auto, path.Join(strings.TrimSpace(string(b)), app)).Delete())
	}
	errs = append(errs,
		rootfs.Remove(r.images, filepath.Join(p.path, "apps", app), leaseID(p.uuid, app)),
		removeIfExists(filepath.Join(p.path, poddir.LogsDir, app+".log")),
		removeIfExists(filepath.Join(p.path, poddir.AppsState, app+".json")))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: pod %s: app %s is out of the pod, but not all of it is gone (`karman gc` of the pod removes the rest): %w", what, p.uuid, app, err)
	}
	return nil
}

func removeIfExists(name string) error {
	if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// ListApps returns the apps of a pod with their state: created, running
// or exited, PID, exit status, times and restart count.
func (r *Runtime) ListApps(_ context.Context, uuid string) ([]AppInfo, error) {
	p, err := r.find(uuid)
	if err != nil {
		return nil, err
	}
	return r.readInfo(p, false).Apps, nil
}

// UpdateApp applies new cgroup limits to an app of a running pod and
// records them in pod.json; zero values are left as they are (a limit is
// changed, not removed).
func (r *Runtime) UpdateApp(ctx context.Context, uuid, app string, res poddir.Resources) error {
	const what = "app update"
	p, pd, lock, err := r.runningPod(ctx, uuid, what)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	a, err := appByName(p, pd, app, what)
	if err != nil {
		return err
	}
	if err := res.Validate(); err != nil {
		return fmt.Errorf("%s: app %s: %w: %w", what, app, ErrInvalid, err)
	}
	b, err := os.ReadFile(filepath.Join(p.path, poddir.CgroupFile))
	if err != nil {
		return fmt.Errorf("%s: pod %s has no cgroup: %w", what, p.uuid, err)
	}
	var cg poddir.Cgroups
	if err := poddir.ReadJSON(filepath.Join(p.path, poddir.CgroupsFile), &cg); err != nil {
		return fmt.Errorf("%s: the pod's cgroups: %w", what, err)
	}
	// The app's devices are given again: the device rules are rewritten
	// with the limits.
	if cg.V2 {
		if err := poddir.CheckV2Limits([]poddir.App{{Name: app, Resources: res}}); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	if _, err := cgroups.OpenPod(podHierarchy(cg), strings.TrimSpace(string(b))).AddApp(app, appResources(poddir.App{Resources: res, Devices: a.Devices, Privileged: a.Privileged})); err != nil {
		return fmt.Errorf("%s: app %s: %w", what, app, err)
	}
	if res.MemoryBytes != 0 {
		a.Resources.MemoryBytes = res.MemoryBytes
	}
	if res.CPUMillis != 0 {
		a.Resources.CPUMillis = res.CPUMillis
	}
	if res.CPUShares != 0 {
		a.Resources.CPUShares = res.CPUShares
	}
	if res.PidsLimit != 0 {
		a.Resources.PidsLimit = res.PidsLimit
	}
	return poddir.Save(p.path, pd)
}
