package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/image/store"
)

func newImageCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Manage the image store"}
	cmd.AddCommand(newImageListCommand(g), newImageInspectCommand(g), newImageRmCommand(g), newImageGCCommand(g), newImageCheckCommand(g))
	return cmd
}

func newImageListCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use: "list", Aliases: []string{"ls"}, Short: "List stored images", Args: cobra.NoArgs,
		Long: `List the stored images. An image whose manifest, config or layer is
missing or corrupt is listed with STATUS "broken: ..." (in JSON: status
"broken", problem and fix), and a warning on stderr names the command
that repairs it. A corrupt refs index (refs.json) makes list fail with
the repair; once a fetch has rebuilt it, list warns until the damaged
copy is deleted.`,
	}
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
		if err := st.RefsDamage(); err != nil {
			g.warn(err.Error()) // rebuilt: names of images not fetched since are missing
		}
		for _, img := range imgs {
			if img.Status == image.StatusBroken {
				g.warn(brokenWarning(img))
			}
		}
		if *format == "json" {
			if imgs == nil {
				return writeJSON(cmd.OutOrStdout(), []any{})
			}
			return writeJSON(cmd.OutOrStdout(), imgs)
		}
		w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		if !*noLegend {
			fmt.Fprintln(w, "NAME\tDIGEST\tSIZE\tCREATED\tSTATUS")
		}
		for _, img := range imgs {
			created := "-"
			if !img.Created.IsZero() {
				created = img.Created.UTC().Format(time.RFC3339)
			}
			status := img.Status
			if img.Status == image.StatusBroken {
				status = "broken: " + shortenDigests(img.Problem)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", strings.Join(img.Names, ","), shortDigest(img.Digest), humanBytes(img.Size), created, status)
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
			_, cfg, err := st.Load(d)
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
	cmd := &cobra.Command{
		Use: "gc", Short: "Remove blobs and layers no image or pod needs", Args: cobra.NoArgs,
		Long: `Remove the blobs and extracted layers that no named image and no pod
needs, and what killed fetches left in the store's tmp/.

A broken image does not stop gc. When an image's manifest is missing or
corrupt, gc cannot tell which blobs and layers it uses: it then removes
none of them (only temporary files and leases of vanished pods), and
warns, naming the command that repairs the image. It does the same
while the refs index (refs.json) is corrupt, or a damaged copy of it
that a fetch moved aside is still there. Damaged blobs are found by
"karman image check".`,
	}
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
		for _, u := range res.Unknown {
			g.warn("image gc removed no blob or layer: " + u)
		}
		if *format == "json" {
			return writeJSON(cmd.OutOrStdout(), res)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "removed %d blobs, %d layers, %d temporary files; freed %s\n", res.Blobs, res.Layers, res.Temp, humanBytes(res.Bytes))
		return nil
	}
	return cmd
}

func newImageCheckCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Hash every stored blob again and report (or --remove) damaged ones",
		Long: `Read every blob of the store, hash it, and compare the digest with the
blob's name; then list the images that cannot be used. A damaged layer
blob is found only this way: nothing else reads a layer blob once it is
extracted.

With --remove, damaged blobs are deleted, with the layers extracted from
them (they came from the same damaged data and cannot be verified on
their own), so that "karman fetch IMAGE" downloads them again. A layer
that a running pod may use is kept, with its blob, and reported.

Exits 254 when it leaves a damaged blob in the store: always without
--remove, and with it when a blob had to be kept.`,
		Args: cobra.NoArgs,
	}
	format := formatFlag(cmd)
	remove := cmd.Flags().Bool("remove", false, "delete damaged blobs and the layers extracted from them")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		st, err := g.store()
		if err != nil {
			return err
		}
		res, err := st.Check(cmd.Context(), store.CheckOptions{Remove: *remove})
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if *format == "json" {
			if err := writeJSON(out, res); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(out, "checked %d blobs (%s): %d damaged\n", res.Blobs, humanBytes(res.Bytes), len(res.Bad))
			if len(res.Bad) > 0 {
				w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "BLOB\tPROBLEM\tUSED AS\tACTION")
				for _, b := range res.Bad {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", shortDigest(b.Digest), shortenDigests(b.Problem), orDash(strings.Join(b.Uses, ", ")), checkAction(b))
				}
				if err := w.Flush(); err != nil {
					return err
				}
			}
		}
		if res.Refs != "" {
			g.warn(res.Refs)
		}
		for _, img := range res.Broken {
			g.warn(brokenWarning(img))
		}
		if n := res.Kept(); n > 0 {
			if !*remove {
				return fmt.Errorf("image check: %d damaged blobs; remove them with `karman image check --remove`, then fetch the images that used them again", n)
			}
			return fmt.Errorf("image check: %d damaged blobs kept (see ACTION); remove the pods that use them, then run `karman image check --remove` again", n)
		}
		return nil
	}
	return cmd
}

// brokenWarning is the one-line warning about a broken image.
func brokenWarning(img image.Image) string {
	return fmt.Sprintf("image %s (%s) is broken: %s; repair it with `%s`", strings.Join(img.Names, ", "), shortDigest(img.Digest), img.Problem, img.Fix)
}

// checkAction says what image check did with a damaged blob.
func checkAction(b store.BadBlob) string {
	switch {
	case b.Removed && b.Layer == "removed":
		return "removed, with its extracted layer"
	case b.Removed:
		return "removed"
	case b.Kept != "":
		return "kept: " + b.Kept
	}
	return "none (use --remove)"
}

// shortenDigests shortens every sha256 digest in s to its first 12 hex
// digits, for a table.
func shortenDigests(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "sha256:")
		if i < 0 || len(s) < i+7+64 || !store.IsSHA256Hex(s[i+7:i+7+64]) {
			if i < 0 {
				b.WriteString(s)
				return b.String()
			}
			b.WriteString(s[:i+7])
			s = s[i+7:]
			continue
		}
		b.WriteString(s[:i] + s[i+7:i+7+12])
		s = s[i+7+64:]
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
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
