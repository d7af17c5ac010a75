package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/stage1"
)

// newAppCommand is `karman app`: the apps of a running pod.
func newAppCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "app",
		Short: "Add, start, stop, remove and list the apps of a running pod",
		Long: `The apps of a running pod change while it runs: start one with
` + "`karman run --no-apps`" + ` (or --keep-alive), add apps to it, start, stop,
start again and remove them. Every app shares the pod's network, IPC and
UTS namespaces. See docs/pods.md, "Mutable pods".`,
	}
	cmd.AddCommand(newAppAddCommand(g), newAppStartCommand(g), newAppStopCommand(g), newAppRmCommand(g), newAppListCommand(g), newAppAttachCommand(g))
	return cmd
}

func newAppAddCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "add [FLAGS] UUID IMAGE [--name NAME] [APP-FLAGS] [-- ARGS...]",
		Short: "Prepare an app in a running pod, created and not started; prints its name",
		Args:  cobra.MinimumNArgs(2),
	}
	fs := cmd.Flags()
	fs.SetInterspersed(false) // flags after IMAGE belong to the app
	name := fs.String("name", "", "the app's name (default: from the image's name)")
	pull := fs.String("pull-policy", "new", "when to fetch the image: new (if not stored), update (always), never")
	insecure := fs.String("insecure-options", "", insecureHelp)
	stdin := fs.Bool("stdin", false, "keep the app's stdin open for `karman app attach` to write to")
	stdinOnce := fs.Bool("stdin-once", false, "like --stdin, and close it when the first attach session's stdin ends")
	tty := fs.Bool("tty", false, "give the app a terminal of its own, which `karman app attach` relays")
	var common appFlags
	common.register(fs)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		ins, err := insecureOptions(*insecure, "image", "http", "tls", "capabilities", "paths", "seccomp")
		if err != nil {
			return err
		}
		rest, appName, err := cutNameFlag(args[1:])
		if err != nil {
			return err
		}
		if appName != "" {
			*name = appName
		}
		apps, err := parseApps(rest, &common)
		if err != nil {
			return err
		}
		if len(apps) != 1 {
			return fmt.Errorf("app add takes one image, got %d: add each app with its own `karman app add`", len(apps))
		}
		if *name != "" {
			apps[0].Name = *name
		}
		apps[0].Stdin, apps[0].StdinOnce, apps[0].TTY = *stdin || *stdinOnce, *stdinOnce, *tty
		rt, err := g.runtime()
		if err != nil {
			return err
		}
		n, err := rt.AddApp(cmd.Context(), args[0], apps[0], stage0.AddAppOptions{
			PullPolicy: *pull, InsecureHTTP: ins["http"], InsecureTLS: ins["tls"], InsecureImage: ins["image"],
			InsecureCaps: ins["capabilities"], InsecurePaths: ins["paths"], InsecureSeccomp: ins["seccomp"],
		})
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), n)
		return nil
	}
	return cmd
}

// cutNameFlag takes --name NAME (or --name=NAME) out of the app flags
// after the image, before any `--`: app add takes the app's name there,
// beside its other flags.
func cutNameFlag(args []string) ([]string, string, error) {
	var out []string
	name := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return append(out, args[i:]...), name, nil
		case a == "--name":
			if i+1 >= len(args) {
				return nil, "", errors.New("--name needs a value: the app's name")
			}
			name = args[i+1]
			i++
		case strings.HasPrefix(a, "--name="):
			name = strings.TrimPrefix(a, "--name=")
		default:
			out = append(out, a)
		}
	}
	return out, name, nil
}

// appFlag registers --app, required.
func appFlag(fs *pflag.FlagSet) *string {
	return fs.String("app", "", "the app's name (see `karman app list UUID`)")
}

func needApp(app string) error {
	if app == "" {
		return errors.New("no app given: name it with --app (see `karman app list UUID`)")
	}
	return nil
}

func newAppStartCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "start UUID --app NAME", Short: "Start an app of a running pod, or start it again after it exited", Args: cobra.ExactArgs(1)}
	app := appFlag(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := needApp(*app); err != nil {
			return err
		}
		rt, err := g.runtime()
		if err != nil {
			return err
		}
		err = rt.StartApp(cmd.Context(), args[0], *app)
		var se *stage1.StartError
		if errors.As(err, &se) {
			// The command could not be started: its status, as for run.
			fmt.Fprintf(cmd.ErrOrStderr(), "karman: %v\n", err)
			return exitCode(se.Code)
		}
		return err
	}
	return cmd
}

func newAppStopCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "stop UUID --app NAME [--timeout D]", Short: "Stop an app of a running pod and wait for its end; the pod goes on", Args: cobra.ExactArgs(1)}
	app := appFlag(cmd.Flags())
	timeout := cmd.Flags().Duration("timeout", 0, "time between SIGTERM and SIGKILL (default: the pod's --stop-timeout)")
	force := cmd.Flags().Bool("force", false, "SIGKILL at once")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := needApp(*app); err != nil {
			return err
		}
		if *timeout < 0 {
			return fmt.Errorf("--timeout %s: use a positive duration such as 5s, or leave it out for the pod's stop timeout", *timeout)
		}
		rt, err := g.runtime()
		if err != nil {
			return err
		}
		_, err = rt.StopApp(cmd.Context(), args[0], *app, *timeout, *force)
		return err
	}
	return cmd
}

func newAppRmCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "rm UUID --app NAME", Short: "Remove a stopped app from a running pod: its mounts, cgroup, files and log", Args: cobra.ExactArgs(1)}
	app := appFlag(cmd.Flags())
	force := cmd.Flags().Bool("force", false, "kill the app first if it runs")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := needApp(*app); err != nil {
			return err
		}
		rt, err := g.runtime()
		if err != nil {
			return err
		}
		return rt.RemoveApp(cmd.Context(), args[0], *app, *force)
	}
	return cmd
}

func newAppListCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "list UUID", Short: "List the apps of a pod with their state", Args: cobra.ExactArgs(1)}
	format := formatFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		rt, err := g.runtime()
		if err != nil {
			return err
		}
		apps, err := rt.ListApps(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		if *format == "json" {
			return writeJSON(cmd.OutOrStdout(), apps)
		}
		w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tSTATE\tPID\tEXIT\tRESTARTS\tSTARTED\tIMAGE")
		for _, a := range apps {
			exit, started, pid := "-", "-", "-"
			if a.ExitCode != nil {
				exit = fmt.Sprint(*a.ExitCode)
			}
			if !a.Started.IsZero() {
				started = a.Started.Local().Format(time.RFC3339)
			}
			if a.PID != 0 {
				pid = fmt.Sprint(a.PID)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", a.Name, a.State, pid, exit, a.Restarts, started, a.Image)
		}
		return w.Flush()
	}
	return cmd
}

func newAppAttachCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "attach UUID [--app NAME]",
		Short: "Attach to a running app's stdio: its output from now on, and its stdin if it was added with --stdin or --tty",
		Args:  cobra.ExactArgs(1),
	}
	app := appFlag(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		rt, err := g.runtime()
		if err != nil {
			return err
		}
		return rt.Attach(cmd.Context(), args[0], stage0.AttachOptions{App: *app, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	}
	return cmd
}
