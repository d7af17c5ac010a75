package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/karman-project/karman/image/store"
	"github.com/karman-project/karman/isolators/cgroups"
)

// globals are the flags every command shares.
type globals struct {
	dir       string
	configDir string
	cgroupH   string // --cgroup-hierarchy
	hierarchy cgroups.Hierarchy
	debug     bool
	log       *slog.Logger
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func newRootCommand() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "karman",
		Short:         "Karman runs pods of OCI images without a daemon",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if g.debug {
				level = slog.LevelDebug
			}
			g.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			var err error
			if g.hierarchy, err = cgroups.ParseHierarchy(g.cgroupH); err != nil {
				return err
			}
			if g.dir, err = filepath.Abs(g.dir); err != nil {
				return err
			}
			g.configDir, err = filepath.Abs(g.configDir)
			return err
		},
	}
	root.PersistentFlags().StringVar(&g.dir, "dir", envOr("KARMAN_DIR", "/var/lib/karman"), "data directory: images and pods ($KARMAN_DIR)")
	root.PersistentFlags().StringVar(&g.configDir, "config-dir", envOr("KARMAN_CONFIG_DIR", "/etc/karman"), "configuration directory: policy, networks ($KARMAN_CONFIG_DIR)")
	root.PersistentFlags().StringVar(&g.cgroupH, "cgroup-hierarchy", string(cgroups.Auto), "cgroup hierarchy new pods are made in: auto (v2 on a unified host, else v1), v1, or unified (the cgroup2 hierarchy, also on a hybrid host)")
	root.PersistentFlags().BoolVar(&g.debug, "debug", false, "log debug records to stderr")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w (see `%s --help`)", err, cmd.CommandPath())
	})
	root.AddCommand(
		newVersionCommand(g),
		newImageCommand(g),
		newRunCommand(g),
		newPrepareCommand(g),
		newRunPreparedCommand(g),
		newListCommand(g),
		newStatusCommand(g),
		newStopCommand(g),
		newRmCommand(g),
		newGCCommand(g),
		newEnterCommand(g),
		newPortForwardCommand(g),
		newLogsCommand(g),
		newAppCommand(g),
	)
	root.AddCommand(fullOnlyCommands(g)...)
	return root
}

// fullOnly are the commands that link the registry client, signature
// verification or the agent's server, with their one-line help: the lean
// karman leaves them to karman-full (lean.go), which carries them
// (full.go).
var fullOnly = map[string]string{
	"fetch":  "Fetch images into the store and print their digests",
	"trust":  "Manage the signature policy and the trusted keys",
	"verify": "Check an image against the signature policy, fetching nothing",
	"agent":  "Serve the node agent API: report the node, run tasks for a cluster master",
}

// store opens the image store under --dir.
func (g *globals) store() (*store.Store, error) {
	st, err := store.Open(filepath.Join(g.dir, "images"), g.log)
	if err != nil {
		return nil, fmt.Errorf("%w (is --dir %s writable? most commands need root)", err, g.dir)
	}
	return st, nil
}

// formatFlag adds --format to a listing command.
func formatFlag(cmd *cobra.Command) *string {
	return cmd.Flags().String("format", "table", "output format: table or json")
}

func checkFormat(f string) error {
	if f != "table" && f != "json" {
		return fmt.Errorf("--format %q: use table or json", f)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// insecureHelp documents --insecure-options of the commands that fetch.
const insecureHelp = "comma-separated: image (skip signature verification, loudly), http (plain HTTP to non-loopback registries), tls (skip certificate checks); run and prepare also take capabilities, paths, seccomp (drop the apps' default isolation)"

// warn prints a warning for the user on stderr, one line.
func (g *globals) warn(msg string) {
	fmt.Fprintln(os.Stderr, "karman: "+strings.ReplaceAll(msg, "\n", "; "))
}

// insecureOptions parses --insecure-options=a,b,c against the allowed set.
func insecureOptions(v string, allowed ...string) (map[string]bool, error) {
	out := map[string]bool{}
	if v == "" {
		return out, nil
	}
	for _, o := range strings.Split(v, ",") {
		ok := false
		for _, a := range allowed {
			ok = ok || o == a
		}
		if !ok {
			return nil, fmt.Errorf("--insecure-options: unknown option %q (valid: %s)", o, strings.Join(allowed, ", "))
		}
		out[o] = true
	}
	return out, nil
}
