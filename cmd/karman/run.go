package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/karman-project/karman/network"
	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/stage1/poddir"
)

// appFlags are the flags that may be given per app, after its image.
type appFlags struct {
	exec      string
	env       []string
	user      string
	workdir   string
	volumes   []string
	memory    string
	cpu       string
	cpuShares int64
	pids      int64
	capsKeep  []string
	capsDrop  []string
	readonly  bool
	oomAdj    string
	seccomp   string
	pid       string
	// Security options beyond the defaults (stage0/security.go).
	group          string
	groupAdd       []uint
	groupsPolicy   string
	noNewPrivs     bool
	privileged     bool
	maskedPaths    []string
	readonlyPaths  []string
	devices        []string
	seccompProfile string
	// fs is where the flags were registered, to tell a flag given empty
	// from one not given.
	fs *pflag.FlagSet
}

func (f *appFlags) register(fs *pflag.FlagSet) {
	f.fs = fs
	fs.StringVar(&f.exec, "exec", "", "command to run instead of the image's entrypoint")
	fs.StringArrayVar(&f.env, "env", nil, "set an environment variable, NAME=VALUE (repeatable)")
	fs.StringVar(&f.user, "user", "", "user to run as: name or uid[:gid], resolved in the image")
	fs.StringVar(&f.workdir, "workdir", "", "working directory of the app")
	fs.StringArrayVar(&f.volumes, "volume", nil, "bind-mount a host path: SRC:DST[:OPTIONS], OPTIONS ro or rw, nonrecursive (ro on the volume's own mount only) and private, rslave or rshared, comma-separated (repeatable)")
	fs.StringVar(&f.memory, "memory", "", "memory limit, 4M to 1048576G, e.g. 256M or 1G (the app is OOM-killed beyond it)")
	fs.StringVar(&f.cpu, "cpu", "", "CPU limit, 10m to 1000 cores, in millicores (500m) or cores (1.5), as a CFS quota")
	fs.Int64Var(&f.cpuShares, "cpu-shares", 0, "relative CPU weight, 2 to 262144 (cgroup v1 shares; 0: the default weight, 1024)")
	fs.Int64Var(&f.pids, "pids-limit", 0, "most processes and threads the app may have, 1 to 4194304 (0: no limit)")
	fs.StringSliceVar(&f.capsKeep, "caps-retain", nil, "the app's whole capability set, e.g. CAP_NET_BIND_SERVICE,CAP_CHOWN")
	fs.StringSliceVar(&f.capsDrop, "caps-remove", nil, "capabilities to drop from the default set")
	fs.BoolVar(&f.readonly, "readonly-rootfs", false, "mount the app's root filesystem read-only")
	fs.StringVar(&f.oomAdj, "oom-score-adj", "", "the app's oom_score_adj (-1000..1000)")
	fs.StringVar(&f.pid, "pid", "", "the app's PID namespace: pod (shared with the pod's other apps, the default) or app (its own, with the app as PID 1)")
	fs.StringVar(&f.seccomp, "seccomp", "", "the app's seccomp filter: mode=remove|retain[,errno=NAME],SYSCALL[,SYSCALL...] or unconfined (see docs/pods.md)")
	fs.StringVar(&f.seccompProfile, "seccomp-profile", "", "the app's seccomp filter from a profile file in the OCI JSON format (defaultAction, architectures, syscalls); not with --seccomp")
	fs.StringVar(&f.group, "group", "", "the app's group, a name in the image's /etc/group or a gid, in place of its user's")
	fs.UintSliceVar(&f.groupAdd, "group-add", nil, "supplemental gids of the app, comma-separated or repeated")
	fs.StringVar(&f.groupsPolicy, "groups-policy", "", "merge (default: --group-add and the user's groups in the image's /etc/group) or strict (only --group-add)")
	fs.BoolVar(&f.noNewPrivs, "no-new-privs", true, "set no_new_privs, so that setuid programs and file capabilities grant nothing; =false lets them")
	fs.BoolVar(&f.privileged, "privileged", false, "every capability, no seccomp filter, /proc and /sys unmasked and writable, every host device (overrides the other isolation flags)")
	fs.StringSliceVar(&f.maskedPaths, "masked-paths", nil, "paths to mask in place of the defaults of /proc and /sys, comma-separated; empty: none")
	fs.StringSliceVar(&f.readonlyPaths, "readonly-paths", nil, "paths to make read-only in place of the defaults of /proc, comma-separated; empty: none")
	fs.StringArrayVar(&f.devices, "device", nil, "give the app a host device node: HOSTPATH[:PATH][:PERMISSIONS], PERMISSIONS of r, w, m (default rwm) (repeatable)")
}

// changed tells whether the flag was given.
func (f *appFlags) changed(name string) bool {
	if f.fs == nil {
		return false
	}
	fl := f.fs.Lookup(name)
	return fl != nil && fl.Changed
}

func (f *appFlags) apply(a *stage0.AppSpec) error {
	// A flag given empty is refused rather than read as not given.
	for _, name := range []string{"exec", "user", "workdir", "memory", "cpu", "seccomp", "oom-score-adj", "pid", "group", "groups-policy", "seccomp-profile"} {
		if f.fs == nil {
			break
		}
		if fl := f.fs.Lookup(name); fl != nil && fl.Changed && fl.Value.String() == "" {
			return fmt.Errorf("--%s is empty: give a value, or leave the flag out for the default", name)
		}
	}
	if f.exec != "" {
		if err := stage0.CheckExec(f.exec); err != nil {
			return fmt.Errorf("--exec: %w", err)
		}
		a.Exec = f.exec
	}
	a.Env = append(a.Env, f.env...)
	if f.user != "" {
		a.User = f.user
	}
	if f.workdir != "" {
		a.WorkingDir = f.workdir
	}
	if f.memory != "" {
		n, err := parseBytes(f.memory)
		if err != nil {
			return fmt.Errorf("--memory: %w", err)
		}
		a.Resources.MemoryBytes = n
	}
	if f.cpu != "" {
		n, err := parseMillicores(f.cpu)
		if err != nil {
			return fmt.Errorf("--cpu: %w", err)
		}
		a.Resources.CPUMillis = n
	}
	if f.cpuShares < 0 {
		return fmt.Errorf("--cpu-shares %d: use 2 to 262144, or 0 for the default weight (1024)", f.cpuShares)
	}
	if f.cpuShares != 0 {
		a.Resources.CPUShares = uint64(f.cpuShares)
	}
	if f.pids != 0 {
		a.Resources.PidsLimit = f.pids
	}
	if len(f.capsKeep) > 0 {
		a.CapsRetain = f.capsKeep
	}
	if len(f.capsDrop) > 0 {
		a.CapsRemove = f.capsDrop
	}
	a.ReadonlyRootfs = a.ReadonlyRootfs || f.readonly
	if f.seccomp != "" {
		a.Seccomp = f.seccomp
	}
	if f.oomAdj != "" {
		v, err := strconv.Atoi(f.oomAdj)
		if err != nil {
			return fmt.Errorf("--oom-score-adj %q: use a number from -1000 to 1000", f.oomAdj)
		}
		a.OOMScoreAdj = &v
	}
	if f.pid != "" {
		if err := stage0.CheckPIDNamespace(f.pid); err != nil {
			return err
		}
		a.PIDNamespace = f.pid
	}
	if f.group != "" {
		a.Group = f.group
	}
	for _, g := range f.groupAdd {
		if uint64(g) > 1<<32-2 {
			return fmt.Errorf("--group-add %d: gids are 0 to 4294967294", g)
		}
		a.SupplementalGroups = append(a.SupplementalGroups, uint32(g))
	}
	if f.groupsPolicy != "" {
		a.GroupsPolicy = f.groupsPolicy
	}
	if f.changed("no-new-privs") {
		a.NewPrivileges = !f.noNewPrivs
	}
	a.Privileged = a.Privileged || f.privileged
	if f.changed("masked-paths") {
		a.MaskedPaths = append([]string{}, f.maskedPaths...)
	}
	if f.changed("readonly-paths") {
		a.ReadonlyPaths = append([]string{}, f.readonlyPaths...)
	}
	if f.seccompProfile != "" {
		a.SeccompProfile = f.seccompProfile
	}
	for _, v := range f.devices {
		d, err := stage0.ParseDevice(v)
		if err != nil {
			return fmt.Errorf("--device %w", err)
		}
		a.Devices = append(a.Devices, d)
	}
	for _, v := range f.volumes {
		m, err := stage0.ParseVolume(v)
		if err != nil {
			return fmt.Errorf("--volume %w", err)
		}
		a.Mounts = append(a.Mounts, m)
	}
	return nil
}

// parseApps splits `IMAGE [APP-FLAGS] [-- ARGS...] [--- IMAGE ...]...` into
// app specs; common holds the app flags given before the first image.
func parseApps(args []string, common *appFlags) ([]stage0.AppSpec, error) {
	var apps []stage0.AppSpec
	for len(args) > 0 {
		seg := args
		if i := indexOf(args, "---"); i >= 0 {
			seg, args = args[:i], args[i+1:]
			if len(args) == 0 {
				return nil, fmt.Errorf("expected an image after the last ---")
			}
		} else {
			args = nil
		}
		if len(seg) == 0 || strings.HasPrefix(seg[0], "-") {
			return nil, fmt.Errorf("expected an image after ---, got %q", strings.Join(seg, " "))
		}
		app := stage0.AppSpec{Image: seg[0]}
		if err := common.apply(&app); err != nil {
			return nil, err
		}
		rest := seg[1:]
		var appArgs []string
		if i := indexOf(rest, "--"); i >= 0 {
			rest, appArgs = rest[:i], rest[i+1:]
		}
		var own appFlags
		fs := pflag.NewFlagSet(app.Image, pflag.ContinueOnError)
		own.register(fs)
		if err := fs.Parse(rest); err != nil {
			return nil, fmt.Errorf("app %s: %w", app.Image, err)
		}
		if fs.NArg() > 0 {
			return nil, fmt.Errorf("app %s: unexpected %q; app arguments go after --", app.Image, fs.Args())
		}
		if err := own.apply(&app); err != nil {
			return nil, err
		}
		app.Args = appArgs
		apps = append(apps, app)
	}
	return apps, nil
}

func indexOf(args []string, s string) int {
	for i, a := range args {
		if a == s {
			return i
		}
	}
	return -1
}

// podFlags are the flags of run and prepare.
type podFlags struct {
	common      appFlags
	name        string
	hostname    string
	net         string
	pull        string
	insecure    string
	noOverlay   bool
	stopTimeout time.Duration
	interactive bool
	notifyApp   bool
	keepAlive   bool
	sysctls     []string
	hostPID     bool
	hostIPC     bool
	ports       []string
	dns         []string
	dnsSearch   []string
}

func (f *podFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.SetInterspersed(false) // flags after IMAGE belong to the app
	f.common.register(fs)
	fs.StringVar(&f.name, "name", "", "name of the pod")
	fs.StringVar(&f.hostname, "hostname", "", "hostname of the pod (default karman-UUID8)")
	fs.StringVar(&f.net, "net", "default", "networks: default, none (loopback only), host, or CNI networks of CONFIG-DIR/net.d: NAME[:K=V;...][,NAME...]")
	fs.StringArrayVar(&f.ports, "port", nil, "forward a host port to the pod: HOSTPORT:PODPORT[/tcp|udp] (repeatable)")
	fs.StringArrayVar(&f.dns, "dns", nil, "the pod's nameserver: an IP address (repeatable), host (the host's resolv.conf) or none (keep the image's)")
	fs.StringArrayVar(&f.dnsSearch, "dns-search", nil, "a DNS search domain of the pod (repeatable)")
	fs.StringVar(&f.pull, "pull-policy", "new", "when to fetch images: new (if not stored), update (always), never")
	fs.StringVar(&f.insecure, "insecure-options", "", insecureHelp)
	fs.BoolVar(&f.noOverlay, "no-overlay", false, "copy image layers instead of mounting an overlay")
	fs.DurationVar(&f.stopTimeout, "stop-timeout", 10*time.Second, "time apps get between SIGTERM and SIGKILL when the pod stops")
	fs.BoolVar(&f.interactive, "interactive", false, "give the (single) app this terminal")
	fs.StringArrayVar(&f.sysctls, "sysctl", nil, "set a namespaced sysctl in the pod, KEY=VALUE (repeatable; the pod's apps share it)")
	fs.BoolVar(&f.hostPID, "host-pid", false, "run the pod in the host's PID namespace: its apps see the host's processes")
	fs.BoolVar(&f.hostIPC, "host-ipc", false, "run the pod in the host's IPC namespace: its apps share the host's System V IPC and message queues")
	fs.BoolVar(&f.notifyApp, "notify-app", false, "pass $NOTIFY_SOCKET to the app, which sends READY=1 itself (default: karman sends it once the apps started)")
	fs.BoolVar(&f.keepAlive, "keep-alive", false, "keep the pod running until it is stopped, not until its last app ends (apps can be added: `karman app add`)")
}

func (f *podFlags) spec(args []string) (stage0.PodSpec, error) {
	ins, err := insecureOptions(f.insecure, "image", "http", "tls", "capabilities", "paths", "seccomp")
	if err != nil {
		return stage0.PodSpec{}, err
	}
	for _, o := range []string{"capabilities", "paths", "seccomp"} {
		if ins[o] {
			fmt.Fprintf(os.Stderr, "karman: WARNING: the apps run without the default %s isolation (--insecure-options=%s)\n", o, o)
		}
	}
	if err := stage0.CheckStopTimeout(f.stopTimeout); err != nil {
		return stage0.PodSpec{}, fmt.Errorf("--stop-timeout: %w", err)
	}
	apps, err := parseApps(args, &f.common)
	if err != nil {
		return stage0.PodSpec{}, err
	}
	var sysctls map[string]string
	for _, kv := range f.sysctls {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return stage0.PodSpec{}, fmt.Errorf("--sysctl %q: use KEY=VALUE, as in kernel.shmmax=268435456", kv)
		}
		if sysctls == nil {
			sysctls = map[string]string{}
		}
		sysctls[k] = v
	}
	var ports []network.PortMapping
	for _, s := range f.ports {
		p, err := network.ParsePort(s)
		if err != nil {
			return stage0.PodSpec{}, err
		}
		ports = append(ports, p)
	}
	return stage0.PodSpec{
		Ports: ports, DNS: network.DNS{Servers: f.dns, Search: f.dnsSearch},
		Sysctls: sysctls, HostPID: f.hostPID, HostIPC: f.hostIPC,
		Apps: apps, Name: f.name, Hostname: f.hostname, Net: f.net, PullPolicy: f.pull,
		NoOverlay: f.noOverlay, StopTimeout: f.stopTimeout, Interactive: f.interactive, NotifyApp: f.notifyApp, KeepAlive: f.keepAlive,
		InsecureHTTP: ins["http"], InsecureTLS: ins["tls"], InsecureImage: ins["image"],
		InsecureCaps: ins["capabilities"], InsecurePaths: ins["paths"], InsecureSeccomp: ins["seccomp"],
	}, nil
}

func newRunCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run [FLAGS] IMAGE [APP-FLAGS] [-- ARGS...] [--- IMAGE [APP-FLAGS] [-- ARGS...]]...",
		Short: "Run a pod in this process",
		Long: `Run a pod of one or more apps. The karman process becomes the pod's
supervisor: it exits with the pod's status (see docs/pods.md), so a shell or
a systemd unit supervises the pod directly. App flags (--exec, --env, --user,
--workdir, --volume) before the first IMAGE apply to every app; after an
IMAGE they apply to that app only.

With --no-apps (and no IMAGE) the pod has only its namespaces, network and
init: it runs in the background, like --detach, until it is stopped, and
apps are added to it with ` + "`karman app add`" + `. --keep-alive keeps a pod
of apps running after its last app ended, until it is stopped.`,
	}
	var f podFlags
	f.register(cmd)
	uuidFile := cmd.Flags().String("uuid-file-save", "", "write the pod's UUID to this file")
	detach := cmd.Flags().Bool("detach", false, "run the pod in the background, print its UUID and return (see `karman logs`)")
	noApps := cmd.Flags().Bool("no-apps", false, "start a pod of no apps (only its namespaces, network and init), in the background; add apps with `karman app add`")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		switch {
		case *noApps && len(args) > 0:
			return fmt.Errorf("--no-apps starts a pod without apps, yet images were given (%s): leave them out, and add them with `karman app add`", args[0])
		case !*noApps && len(args) == 0:
			return fmt.Errorf("no image given: name the image to run, or start an empty pod with --no-apps")
		}
		spec, err := f.spec(args)
		if err != nil {
			return err
		}
		if *noApps {
			if spec.Interactive {
				return fmt.Errorf("--no-apps and --interactive exclude each other: an empty pod has no app to give the terminal to")
			}
			spec.KeepAlive, *detach = true, true
		}
		if *detach && spec.Interactive {
			return fmt.Errorf("--detach and --interactive exclude each other")
		}
		rt, err := g.runtime()
		if err != nil {
			return err
		}
		uuid, code, err := rt.Run(cmd.Context(), spec, stage0.RunOptions{UUIDFile: *uuidFile, Detach: *detach, Debug: g.debug})
		if err != nil {
			return err
		}
		if *detach {
			// Back once the pod runs, so that the next command (app add,
			// enter, stop) finds it up.
			if _, err := rt.WaitStarted(cmd.Context(), uuid); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), uuid)
		}
		return exitCode(code)
	}
	return cmd
}

func newPrepareCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "prepare [FLAGS] IMAGE [APP-FLAGS] [-- ARGS...] [--- IMAGE ...]...",
		Short: "Prepare a pod to run later with run-prepared; prints its UUID",
		Args:  cobra.MinimumNArgs(1),
	}
	var f podFlags
	f.register(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		spec, err := f.spec(args)
		if err != nil {
			return err
		}
		rt, err := g.runtime()
		if err != nil {
			return err
		}
		uuid, err := rt.Prepare(cmd.Context(), spec)
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), uuid)
		return nil
	}
	return cmd
}

func newRunPreparedCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "run-prepared UUID", Short: "Run a prepared pod in this process", Args: cobra.ExactArgs(1)}
	uuidFile := cmd.Flags().String("uuid-file-save", "", "write the pod's UUID to this file")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		rt, err := g.runtime()
		if err != nil {
			return err
		}
		code, err := rt.RunPrepared(cmd.Context(), args[0], stage0.RunOptions{UUIDFile: *uuidFile, Debug: g.debug})
		if err != nil {
			return err
		}
		return exitCode(code)
	}
	return cmd
}

// parseBytes reads a --memory size (poddir.ParseBytes).
func parseBytes(s string) (int64, error) { return poddir.ParseBytes(s) }

// parseMillicores reads a --cpu amount (poddir.ParseMillicores).
func parseMillicores(s string) (int64, error) { return poddir.ParseMillicores(s) }
