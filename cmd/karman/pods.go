package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/karman-project/karman/stage0"
)

func (g *globals) runtime() (*stage0.Runtime, error) {
	rt, err := stage0.New(g.dir, g.configDir, g.log)
	if err != nil {
		return nil, err
	}
	rt.Warn = g.warn
	rt.CgroupHierarchy = g.hierarchy
	rt.Fetcher = g.fetcher(rt)
	if exe, err := os.Executable(); err == nil {
		rt.TeardownCmd = []string{exe, stage0.TeardownEntrypoint}
	}
	return rt, nil
}

// podArgs returns the pod UUIDs from args or from --uuid-file.
func podArgs(args []string, uuidFile string) ([]string, error) {
	if uuidFile != "" {
		u, err := stage0.ReadUUIDFile(uuidFile)
		if err != nil {
			return nil, fmt.Errorf("--uuid-file: %w", err)
		}
		args = append(args, u)
	}
	if len(args) == 0 {
		return nil, errors.New("no pod given: pass a UUID (or a unique prefix) or --uuid-file")
	}
	return args, nil
}

func newListCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "list", Aliases: []string{"ls"}, Short: "List pods", Args: cobra.NoArgs}
	format := formatFlag(cmd)
	noLegend := cmd.Flags().Bool("no-legend", false, "omit the table header")
	full := cmd.Flags().Bool("full", false, "show full UUIDs and digests")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		rt, err := g.runtime()
		if err != nil {
			return err
		}
		pods, err := rt.List(cmd.Context())
		if err != nil {
			return err
		}
		if *format == "json" {
			if pods == nil {
				pods = []stage0.PodInfo{}
			}
			return writeJSON(cmd.OutOrStdout(), pods)
		}
		w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		if !*noLegend {
			fmt.Fprintln(w, "UUID\tNAME\tAPPS\tIMAGES\tSTATE\tCREATED\tEXIT\tNETWORKS")
		}
		for _, p := range pods {
			uuid := p.UUID
			if !*full {
				uuid = uuid[:8]
			}
			var apps, imgs []string
			for _, a := range p.Apps {
				apps = append(apps, a.Name)
				imgs = append(imgs, a.Image)
			}
			exit := "-"
			if p.ExitCode != nil {
				exit = fmt.Sprint(*p.ExitCode)
			}
			var nets []string
			for _, n := range p.Networks {
				nets = append(nets, fmt.Sprintf("%s:%s=%s", n.Name, n.Interface, strings.Join(n.Addresses, "+")))
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", uuid, dash(p.Name), dash(strings.Join(apps, ",")), dash(strings.Join(imgs, ",")), p.State, ago(p.Created), exit, dash(strings.Join(nets, ",")))
		}
		return w.Flush()
	}
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

func newStatusCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "status [--wait[=DUR]] UUID", Short: "Show a pod's status", Args: cobra.MaximumNArgs(1)}
	format := formatFlag(cmd)
	uuidFile := cmd.Flags().String("uuid-file", "", "read the pod UUID from this file")
	wait := cmd.Flags().String("wait", "", "wait until the pod exits (optionally at most DUR, e.g. 30s)")
	cmd.Flags().Lookup("wait").NoOptDefVal = "forever"
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		uuids, err := podArgs(args, *uuidFile)
		if err != nil {
			return err
		}
		rt, err := g.runtime()
		if err != nil {
			return err
		}
		var info stage0.PodInfo
		if *wait != "" {
			ctx := cmd.Context()
			if *wait != "forever" {
				d, err := time.ParseDuration(*wait)
				if err != nil || d <= 0 {
					return fmt.Errorf("--wait=%s: use a positive duration such as 30s, or --wait alone to wait as long as it takes", *wait)
				}
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, d)
				defer cancel()
			}
			info, err = rt.Wait(ctx, uuids[0])
		} else {
			info, err = rt.Status(cmd.Context(), uuids[0])
		}
		if err != nil {
			return err
		}
		if *format == "json" {
			return writeJSON(cmd.OutOrStdout(), info)
		}
		writeStatus(cmd.OutOrStdout(), info)
		return nil
	}
	return cmd
}

// writeStatus prints a pod's status as KEY=VALUE lines, always in the
// same order: the pod's, its times, its networks, then its apps.
func writeStatus(out io.Writer, info stage0.PodInfo) {
	fmt.Fprintf(out, "uuid=%s\nstate=%s\n", info.UUID, info.State)
	if info.Name != "" {
		fmt.Fprintf(out, "name=%s\n", info.Name)
	}
	for _, kt := range []struct {
		k string
		t time.Time
	}{{"created", info.Created}, {"started", info.Started}, {"finished", info.Finished}} {
		if !kt.t.IsZero() {
			fmt.Fprintf(out, "%s=%s\n", kt.k, kt.t.UTC().Format(time.RFC3339Nano))
		}
	}
	if info.ExitCode != nil {
		fmt.Fprintf(out, "exit-code=%d\n", *info.ExitCode)
	}
	for _, n := range info.Networks {
		fmt.Fprintf(out, "network-%s-interface=%s\n", n.Name, n.Interface)
		for _, a := range n.Addresses {
			fmt.Fprintf(out, "network-%s-address=%s\n", n.Name, a)
		}
	}
	for _, a := range info.Apps {
		fmt.Fprintf(out, "app-%s-image=%s@%s\n", a.Name, a.Image, a.ImageDigest)
		fmt.Fprintf(out, "app-%s-state=%s\n", a.Name, a.State)
		if a.Restarts > 0 {
			fmt.Fprintf(out, "app-%s-restarts=%d\n", a.Name, a.Restarts)
		}
		if a.PID != 0 {
			fmt.Fprintf(out, "app-%s-pid=%d\n", a.Name, a.PID)
		}
		if a.ExitCode != nil {
			fmt.Fprintf(out, "app-%s-exit-code=%d\n", a.Name, *a.ExitCode)
		}
		if a.Reason != "" {
			fmt.Fprintf(out, "app-%s-reason=%s\n", a.Name, a.Reason)
		}
	}
}

// eachPod runs fn for every pod named by args or --uuid-file, printing
// the UUIDs it succeeded for and joining the errors of the others.
func eachPod(g *globals, cmd *cobra.Command, args []string, uuidFile string, fn func(*stage0.Runtime, string) error) error {
	uuids, err := podArgs(args, uuidFile)
	if err != nil {
		return err
	}
	rt, err := g.runtime()
	if err != nil {
		return err
	}
	var errs []error
	for _, u := range uuids {
		if err := fn(rt, u); errors.Is(err, stage0.ErrGone) {
			// Another command removed it (or it never was): not a failure.
			fmt.Fprintln(cmd.ErrOrStderr(), "karman: "+err.Error())
			continue
		} else if err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintln(cmd.OutOrStdout(), u)
	}
	return errors.Join(errs...)
}

func newStopCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "stop [--force] UUID...", Short: "Stop running pods"}
	force := cmd.Flags().Bool("force", false, "kill at once instead of SIGTERM then SIGKILL")
	uuidFile := cmd.Flags().String("uuid-file", "", "read the pod UUID from this file")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return eachPod(g, cmd, args, *uuidFile, func(rt *stage0.Runtime, u string) error {
			return rt.Stop(cmd.Context(), u, *force)
		})
	}
	return cmd
}

func newRmCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "rm [--force] UUID...", Short: "Remove exited or prepared pods"}
	uuidFile := cmd.Flags().String("uuid-file", "", "read the pod UUID from this file")
	force := cmd.Flags().Bool("force", false, "remove a damaged pod even if part of its teardown fails (what is left is reported)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return eachPod(g, cmd, args, *uuidFile, func(rt *stage0.Runtime, u string) error {
			if *force {
				return rt.ForceRemove(cmd.Context(), u)
			}
			return rt.Remove(cmd.Context(), u)
		})
	}
	return cmd
}

func newGCCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "gc", Short: "Collect exited pods", Args: cobra.NoArgs}
	grace := cmd.Flags().Duration("grace-period", 30*time.Minute, "how long an exited pod is kept after gc marked it")
	markOnly := cmd.Flags().Bool("mark-only", false, "only mark exited pods")
	all := cmd.Flags().Bool("all", false, "collect every exited pod now, then remove the default network's bridge, nftables table and namespace directory mount if no pod uses them")
	format := formatFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		if *all && (*markOnly || cmd.Flags().Changed("grace-period")) {
			return errors.New("--all collects at once and removes: it takes neither --mark-only nor --grace-period")
		}
		rt, err := g.runtime()
		if err != nil {
			return err
		}
		if *grace < 0 {
			return fmt.Errorf("--grace-period %s: use 0 (collect at once) or a positive duration such as 30m", *grace)
		}
		var res stage0.GCResult
		if *all {
			res, err = rt.GCAll(cmd.Context())
		} else {
			res, err = rt.GC(cmd.Context(), *grace, *markOnly)
		}
		if *format == "json" {
			if werr := writeJSON(cmd.OutOrStdout(), res); werr != nil {
				return werr
			}
		} else {
			for _, u := range res.Marked {
				fmt.Fprintf(cmd.OutOrStdout(), "marked %s\n", u)
			}
			for _, u := range res.Removed {
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", u)
			}
			for _, x := range res.Pruned {
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", x)
			}
			for _, x := range res.Kept {
				fmt.Fprintf(cmd.OutOrStdout(), "kept %s\n", x)
			}
		}
		return err
	}
	return cmd
}

func newEnterCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "enter [--app NAME] UUID [CMD...]", Short: "Run a command inside a running pod", Args: cobra.MinimumNArgs(1)}
	cmd.Flags().SetInterspersed(false)
	app := cmd.Flags().String("app", "", "app to enter (needed when the pod has several)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		rt, err := g.runtime()
		if err != nil {
			return err
		}
		code, err := rt.Enter(cmd.Context(), args[0], stage0.EnterOptions{
			App: *app, Args: args[1:], Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
			TTY: term.IsTerminal(int(os.Stdin.Fd())),
		})
		if err != nil {
			return err
		}
		return exitCode(code)
	}
	return cmd
}

func newLogsCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "logs [-f] [--app NAME] UUID", Short: "Show the output of a pod's app", Args: cobra.ExactArgs(1)}
	follow := cmd.Flags().BoolP("follow", "f", false, "keep showing output until the pod exits")
	app := cmd.Flags().String("app", "", "app whose output to show (needed when the pod has several)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		rt, err := g.runtime()
		if err != nil {
			return err
		}
		return rt.Logs(cmd.Context(), args[0], *app, *follow, cmd.OutOrStdout())
	}
	return cmd
}

// exitCode is an error that carries a command's exit status through
// cobra without a message.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func newPortForwardCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "port-forward UUID [ADDRESS:]LOCALPORT:PODPORT...",
		Short: "Forward local ports to ports of a running pod's loopback, until interrupted",
		Long: `Each connection to LOCALPORT (on 127.0.0.1 unless ADDRESS is given; 0:
any free port) is forwarded to PODPORT on the pod's own loopback, as
kubectl port-forward does: a server listening on 127.0.0.1 in any app of
the pod is reached, with no port mapping and no pod network needed.`,
		Args: cobra.MinimumNArgs(2),
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		rt, err := g.runtime()
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(cmd.Context())
		defer cancel()
		errc := make(chan error, len(args)-1)
		for _, spec := range args[1:] {
			addr, podPort, err := parseForward(spec)
			if err != nil {
				return err
			}
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("port-forward %s: %w", spec, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "forwarding %s -> %d\n", l.Addr(), podPort)
			go func() { errc <- rt.ServePortForward(ctx, args[0], l, podPort) }()
		}
		for range args[1:] {
			if err := <-errc; err != nil {
				return err
			}
		}
		return nil
	}
	return cmd
}

// parseForward parses [ADDRESS:]LOCALPORT:PODPORT.
func parseForward(s string) (addr string, podPort int, err error) {
	i := strings.LastIndex(s, ":")
	if i <= 0 {
		return "", 0, fmt.Errorf("port-forward %q: give LOCALPORT:PODPORT, e.g. 8080:80", s)
	}
	podPort, err = strconv.Atoi(s[i+1:])
	if err != nil || podPort < 1 || podPort > 65535 {
		return "", 0, fmt.Errorf("port-forward %q: the pod's port must be 1 to 65535", s)
	}
	local := s[:i]
	if !strings.Contains(local, ":") {
		local = "127.0.0.1:" + local
	}
	return local, podPort, nil
}
