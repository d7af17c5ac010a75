//go:build !lean

package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/image/fetch"
	"github.com/karman-project/karman/image/registries"
	"github.com/karman-project/karman/stage0/pull"
)

func newFetchCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fetch IMAGE...",
		Short: fullOnly["fetch"],
		Long: `Fetch images into the store and print each image's manifest digest.

IMAGE is a registry reference (HOST[:PORT]/REPO[:TAG|@sha256:DIGEST]),
oci:DIR[:TAG] for an OCI image layout, or docker-archive:FILE for the
output of docker save. Each image must first pass the signature policy
(see karman trust and docs/signing.md); then its layers are fetched,
checked against their digests and extracted, ready to run. Where a
registry image is pulled from (mirrors, other locations, blocked
registries) is CONFIG-DIR/registries.conf's to say (docs/images.md).`,
		Args: cobra.MinimumNArgs(1),
	}
	insecure := cmd.Flags().String("insecure-options", "", insecureHelp)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		ins, err := insecureOptions(*insecure, "image", "http", "tls")
		if err != nil {
			return err
		}
		refs := make([]image.Reference, len(args))
		for i, a := range args {
			if refs[i], err = image.ParseReference(a); err != nil {
				return err
			}
		}
		st, err := g.store()
		if err != nil {
			return err
		}
		regs, err := registries.Load(g.configDir)
		if err != nil {
			return err
		}
		iv := pull.VerifyImages(g.configDir, ins["image"], g.warn)
		for _, ref := range refs {
			o := fetch.Options{Store: st, InsecureHTTP: ins["http"], InsecureTLS: ins["tls"], Registries: regs, Logger: g.log, Verify: iv.Verify, Warm: iv.Warm}
			var bars *fetch.Terminal
			if term.IsTerminal(int(os.Stderr.Fd())) {
				bars = fetch.NewTerminal(os.Stderr)
				o.Progress = bars
			}
			img, err := fetch.Fetch(cmd.Context(), ref, o)
			if bars != nil {
				bars.Stop()
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), img.Digest)
		}
		return nil
	}
	return cmd
}
