package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func newImageCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Manage the image store"}
	cmd.AddCommand(newImageListCommand(g), newImageInspectCommand(g), newImageRmCommand(g), newImageGCCommand(g))
	return cmd
}

func newImageListCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "list", Aliases: []string{"ls"}, Short: "List stored images", Args: cobra.NoArgs}
	format := formatFlag(cmd)
	noLegend := cmd.Flags().Bool("no-legend", false, "omit the table header")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		st, err := g.store()
		if err != nil {
			return err
		}
		imgs, err := st.Images()
		if err != nil {
			return err
		}
		if *format == "json" {
			if imgs == nil {
				return writeJSON(cmd.OutOrStdout(), []any{})
			}
			return writeJSON(cmd.OutOrStdout(), imgs)
		}
		w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		if !*noLegend {
			fmt.Fprintln(w, "NAME\tDIGEST\tSIZE\tCREATED")
		}
		for _, img := range imgs {
			created := "-"
			if !img.Created.IsZero() {
				created = img.Created.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", strings.Join(img.Names, ","), shortDigest(img.Digest), humanBytes(img.Size), created)
		}
		return w.Flush()
	}
	return cmd
}

func newImageInspectCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect IMAGE",
		Short: "Show an image's record and config as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := g.store()
			if err != nil {
				return err
			}
			d, err := st.Resolve(args[0])
			if err != nil {
				return err
			}
			img, err := st.Image(d)
			if err != nil {
				return err
			}
			m, err := st.Manifest(d)
			if err != nil {
				return err
			}
			cfg, err := st.Config(m)
			if err != nil {
				return err
			}
			return writeJSON(cmd.OutOrStdout(), struct {
				Image      any `json:"image"`
				ConfigFile any `json:"configFile"`
			}{img, cfg})
		},
	}
}

func newImageRmCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm IMAGE...",
		Short: "Remove image names; `image gc` then frees the space",
		Long: `Remove image names from the store. A name removes just that name; a
digest (or a unique prefix) removes every name of that image. The
blobs and layers are freed by "karman image gc" once no name and no pod
uses them: removing an image never breaks a pod that runs it.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := g.store()
			if err != nil {
				return err
			}
			for _, a := range args {
				removed, d, err := st.Untag(cmd.Context(), a)
				if err != nil {
					return err
				}
				for _, n := range removed {
					fmt.Fprintf(cmd.OutOrStdout(), "untagged %s (%s)\n", n, shortDigest(d.String()))
				}
			}
			return nil
		},
	}
}

func newImageGCCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "gc", Short: "Remove blobs and layers no image or pod needs", Args: cobra.NoArgs}
	format := formatFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		st, err := g.store()
		if err != nil {
			return err
		}
		res, err := st.GC(cmd.Context())
		if err != nil {
			return err
		}
		if *format == "json" {
			return writeJSON(cmd.OutOrStdout(), res)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "removed %d blobs, %d layers, %d temporary files; freed %s\n", res.Blobs, res.Layers, res.Temp, humanBytes(res.Bytes))
		return nil
	}
	return cmd
}

func shortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}
