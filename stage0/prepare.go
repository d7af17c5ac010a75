package stage0

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/image/rootfs"
	"github.com/karman-project/karman/image/store"
	"github.com/karman-project/karman/internal/atomicfile"
	"github.com/karman-project/karman/internal/lockfile"
	"github.com/karman-project/karman/isolators"
	"github.com/karman-project/karman/network"
	"github.com/karman-project/karman/stage1/poddir"
)

// Prepare creates a pod from spec, ready for RunPrepared, and returns its
// UUID.
func (r *Runtime) Prepare(ctx context.Context, spec PodSpec) (string, error) {
	p, lock, err := r.create(ctx, spec, false)
	if err != nil {
		return "", err
	}
	defer lock.Unlock()
	// A prepared pod may be run after a reboot: what describes it goes to
	// disk first (a pod run at once needs none of it after a reboot).
	if err := r.syncPrepared(p); err != nil {
		r.discard(p)
		return "", fmt.Errorf("pod %s: %w", p.uuid, err)
	}
	np, err := r.move(p, "prepared")
	if err != nil {
		r.discard(p)
		return "", err
	}
	if err := atomicfile.SyncDir(filepath.Dir(np.path)); err != nil {
		return "", fmt.Errorf("pod %s: %w", p.uuid, err)
	}
	return p.uuid, nil
}

// syncPrepared fsyncs what a prepared pod needs after a reboot: pod.json,
// its labels, its cgroup parent, its network request, its directories and its image leases.
func (r *Runtime) syncPrepared(p pod) error {
	var leases []string
	if p.spec != nil {
		for _, a := range p.spec.Apps {
			leases = append(leases, leaseID(p.uuid, a.Name))
		}
	}
	return errors.Join(
		atomicfile.Sync(filepath.Join(p.path, poddir.PodFile), filepath.Join(p.path, LabelsFile),
			filepath.Join(p.path, CgroupParentFile), filepath.Join(p.path, netRequestFile), filepath.Join(p.path, network.RecordDir), p.path),
		r.images.SyncLeases(leases...))
}

func leaseID(uuid, app string) string { return "pod-" + uuid + "-" + app }

// create makes a pod directory in embryo/ and fills it: images resolved
// (fetched per the pull policy), one rendering per app, pod.json; with
// run, the pod's networks too (else they wait for RunPrepared). It
// returns the pod still locked. On failure nothing is left behind.
func (r *Runtime) create(ctx context.Context, spec PodSpec, run bool) (_ pod, lock *lockfile.Lock, err error) {
	if err := spec.Validate(); err != nil {
		return pod{}, nil, err
	}
	for _, a := range spec.Apps {
		if a.Stdin || a.StdinOnce || a.TTY {
			return pod{}, nil, fmt.Errorf("app %s: a stdin or terminal to attach to is for apps added to a running pod (karman app add --stdin, --tty); for a terminal of the pod's one app use --interactive", a.Name)
		}
	}
	if err := r.checkNetwork(spec); err != nil {
		return pod{}, nil, err
	}
	if err := checkVolumes(spec); err != nil {
		return pod{}, nil, err
	}
	uuid := newUUID()
	p := pod{uuid: uuid, stateDir: "embryo", path: r.podPath("embryo", uuid)}
	if err := os.Mkdir(p.path, 0o700); err != nil {
		return pod{}, nil, fmt.Errorf("create pod: %w", err)
	}
	if lock, err = lockfile.TryLockDir(p.path, true); err != nil {
		os.Remove(p.path)
		return pod{}, nil, fmt.Errorf("create pod: %w", err)
	}
	held := lock // the results are zeroed on failure
	defer func() {
		if err != nil {
			r.discard(p)
			held.Unlock()
		}
	}()
	// The labels come first: a caller killed while the pod is being made
	// (an image fetch can take minutes) finds its embryo by them.
	if len(spec.Labels) > 0 {
		b, err := json.Marshal(spec.Labels)
		if err != nil {
			return pod{}, nil, err
		}
		if err := os.WriteFile(filepath.Join(p.path, LabelsFile), b, 0o600); err != nil {
			return pod{}, nil, err
		}
	}
	if spec.CgroupParent != "" {
		if err := os.WriteFile(filepath.Join(p.path, CgroupParentFile), []byte(spec.CgroupParent+"\n"), 0o600); err != nil {
			return pod{}, nil, err
		}
	}
	for _, d := range []string{"apps", poddir.StateDir, poddir.AppsState, poddir.LogsDir} {
		if err := os.MkdirAll(filepath.Join(p.path, d), 0o755); err != nil {
			return pod{}, nil, err
		}
	}
	hostname := spec.Hostname
	if hostname == "" {
		hostname = "karman-" + uuid[:8]
	}
	pd := &poddir.Pod{
		UUID: uuid, Name: spec.Name, Hostname: hostname, Net: spec.Net,
		StopTimeout: spec.StopTimeout, Interactive: spec.Interactive, NotifyApp: spec.NotifyApp, Sysctls: spec.Sysctls,
		KeepAlive: spec.KeepAlive, HostPID: spec.HostPID, HostIPC: spec.HostIPC,
	}
	req, err := prepareNetwork(p, spec, pd, !run)
	if err != nil {
		return pod{}, nil, err
	}
	// The network is made beside the apps' images and renderings: both
	// are mostly system calls, and the machine has more than one CPU.
	netErr := make(chan error, 1)
	if run && req != nil {
		go func() { netErr <- r.attachNetworks(ctx, p, pd, req) }()
	} else {
		netErr <- nil
	}
	var apps []poddir.App
	var appErr error
	for _, as := range spec.Apps {
		app, err := r.prepareApp(ctx, p, spec, as)
		if err != nil {
			appErr = fmt.Errorf("app %s: %w", as.Name, err)
			break
		}
		apps = append(apps, app)
	}
	if err := <-netErr; err != nil && appErr == nil {
		appErr = fmt.Errorf("pod %s: %w", uuid, err)
	}
	if appErr != nil {
		return pod{}, nil, appErr // the deferred discard undoes the network too
	}
	pd.Apps = apps
	if err := poddir.Save(p.path, pd); err != nil {
		return pod{}, nil, err
	}
	p.spec = pd
	return p, lock, nil
}

func (r *Runtime) prepareApp(ctx context.Context, p pod, spec PodSpec, as AppSpec) (poddir.App, error) {
	d, err := r.resolveImage(ctx, as.Image, spec)
	if err != nil {
		return poddir.App{}, err
	}
	_, cfg, err := r.images.Load(d)
	if err != nil {
		return poddir.App{}, err
	}
	rel := filepath.Join("apps", as.Name)
	rf, err := rootfs.Render(ctx, r.images, d, filepath.Join(p.path, rel), leaseID(p.uuid, as.Name), rootfs.Options{NoOverlay: spec.NoOverlay, Deferred: true})
	if err != nil {
		return poddir.App{}, err
	}
	c := cfg.Config
	entry, cmd := c.Entrypoint, c.Cmd
	if as.Exec != "" {
		entry, cmd = []string{as.Exec}, nil
	}
	if len(as.Args) > 0 {
		cmd = as.Args
	}
	argv := append(slices.Clone(entry), cmd...)
	if len(argv) == 0 {
		return poddir.App{}, fmt.Errorf("image %s has no entrypoint or cmd; say what to run with --exec or `-- ARGS`", as.Image)
	}
	user := c.User
	if as.User != "" {
		user = as.User
	}
	copyRoot := ""
	if !rf.Overlay {
		copyRoot = rf.Path
	}
	uid, gid, gids, err := resolveUser(rf.Layers, copyRoot, withGroup(user, as.Group))
	if err != nil {
		return poddir.App{}, err
	}
	gids = appGroups(as, gid, gids)
	wd := c.WorkingDir
	if as.WorkingDir != "" {
		wd = as.WorkingDir
	}
	if wd == "" {
		wd = "/"
	}
	hostNet := spec.Net == network.Host
	caps, err := isolators.AppCaps(as.CapsRetain, as.CapsRemove, hostNet)
	if err != nil {
		return poddir.App{}, err
	}
	if len(as.CapsRetain) == 0 && len(as.CapsRemove) == 0 && !hostNet {
		caps = nil // the default set
	}
	var seccomp *isolators.Seccomp
	if as.Seccomp != "" {
		if seccomp, err = isolators.ParseSeccomp(as.Seccomp); err != nil {
			return poddir.App{}, err
		}
	}
	app := poddir.App{
		Caps: caps, AllCaps: spec.InsecureCaps, Unconfined: spec.InsecureSeccomp, NoMasks: spec.InsecurePaths,
		ReadonlyRootfs: as.ReadonlyRootfs, OOMScoreAdj: as.OOMScoreAdj, Seccomp: seccomp,
		OwnPIDNamespace: as.PIDNamespace == PIDApp,
		Stdin:           as.Stdin || as.StdinOnce, StdinOnce: as.StdinOnce, TTY: as.TTY,
		Name: as.Name, Image: as.Image, ImageDigest: d.String(),
		Dir: rel, Layers: rf.Layers,
		Args: argv, Env: mergeEnv(c.Env, as.Env), WorkingDir: wd,
		UID: uid, GID: gid, GIDs: gids, Mounts: as.Mounts, Resources: as.Resources,
	}
	if err := securityOptions(&app, as); err != nil {
		return poddir.App{}, err
	}
	return app, nil
}

// resolveImage finds the image in the store or fetches it, per the pull
// policy: new fetches only what the store lacks, update always asks the
// source, never only uses the store. What is fetched passes the signature
// policy of the configuration directory first; images already stored were
// judged when they were fetched.
func (r *Runtime) resolveImage(ctx context.Context, arg string, spec PodSpec) (v1.Hash, error) {
	if spec.PullPolicy != "update" {
		d, err := r.images.Resolve(arg)
		if err == nil || spec.PullPolicy == "never" {
			if err != nil {
				return d, fmt.Errorf("%w (--pull-policy=never)", err)
			}
			return d, nil
		}
		if errors.Is(err, store.ErrRefsDamaged) {
			r.log.Warn("image names are unknown; fetching the image again, which rebuilds the refs index", "image", arg, "error", err)
		} else if !errors.Is(err, image.ErrNotFound) {
			return d, err
		}
	}
	if r.Fetcher == nil {
		return v1.Hash{}, fmt.Errorf("image %s is not in the store, and this program cannot fetch images: fetch it with `karman fetch` first, or install karman-full beside karman", arg)
	}
	return r.Fetcher.Fetch(ctx, arg, FetchOptions{InsecureHTTP: spec.InsecureHTTP, InsecureTLS: spec.InsecureTLS, InsecureImage: spec.InsecureImage})
}

// mergeEnv overlays overrides (NAME=VALUE) on the image's environment and
// makes sure PATH is set.
func mergeEnv(base, overrides []string) []string {
	out := slices.Clone(base)
	for _, o := range overrides {
		k, _, _ := strings.Cut(o, "=")
		out = slices.DeleteFunc(out, func(e string) bool { return strings.HasPrefix(e, k+"=") })
		out = append(out, o)
	}
	if !slices.ContainsFunc(out, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		out = append(out, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	return out
}

// discard removes a pod that never ran: its renderings, leases and
// directory, wherever it is now.
func (r *Runtime) discard(p pod) error {
	if np, err := r.relocate(p); err == nil {
		p = np
	}
	if err := r.teardownNetwork(context.Background(), p); err != nil {
		return err // the record stays for gc, which retries
	}
	errs := []error{removeCgroups(p.path, p.uuid)}
	ents, _ := os.ReadDir(filepath.Join(p.path, "apps"))
	for _, e := range ents {
		errs = append(errs, rootfs.Remove(r.images, filepath.Join(p.path, "apps", e.Name()), leaseID(p.uuid, e.Name())))
	}
	errs = append(errs, os.RemoveAll(p.path))
	return errors.Join(errs...)
}
