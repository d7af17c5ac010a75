//go:build !lean

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/image/fetch"
	"github.com/karman-project/karman/image/registries"
	"github.com/karman-project/karman/signing/policy"
	"github.com/karman-project/karman/stage0/pull"
)

func newVerifyCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify IMAGE",
		Short: fullOnly["verify"],
		Long: `Resolve IMAGE to a digest and judge it as fetch would, without fetching its
config or layers: print the scope that decides, its requirement, the
signatures found and what became of each. Exits 0 when the image would be
accepted, 254 when it would be refused.

For an image index the index's digest is verified: it is what a signer
signs when naming the image.`,
		Args: cobra.ExactArgs(1),
	}
	format := formatFlag(cmd)
	insecure := cmd.Flags().String("insecure-options", "", "comma-separated: http (plain HTTP to non-loopback registries), tls (skip certificate checks)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		ins, err := insecureOptions(*insecure, "http", "tls")
		if err != nil {
			return err
		}
		ref, err := image.ParseReference(args[0])
		if err != nil {
			return err
		}
		regs, err := registries.Load(g.configDir)
		if err != nil {
			return err
		}
		v, err := policy.NewVerifier(g.configDir)
		if err != nil {
			return fmt.Errorf("signature policy: %w", err)
		}
		v.ReportAll()
		var dec *policy.Decision
		o := fetch.Options{
			InsecureHTTP: ins["http"], InsecureTLS: ins["tls"], Registries: regs, Logger: g.log,
			Verify: func(ctx context.Context, t fetch.Target) error {
				d, err := v.Check(ctx, pull.PolicyImage(t))
				dec = &d
				return err
			},
		}
		err = fetch.Check(cmd.Context(), ref, o)
		var refused *policy.RefusedError
		if dec == nil || (err != nil && !errors.As(err, &refused)) {
			return err
		}
		if *format == "json" {
			if err := writeJSON(cmd.OutOrStdout(), dec); err != nil {
				return err
			}
		} else if err := printDecision(cmd.OutOrStdout(), dec); err != nil {
			return err
		}
		if !dec.Accepted {
			return exitCode(exitRuntimeError)
		}
		return nil
	}
	return cmd
}

func printDecision(out io.Writer, d *policy.Decision) error {
	line := func(k, v string) { fmt.Fprintf(out, "%-12s%s\n", k+":", v) }
	line("image", d.Image)
	line("digest", d.Digest)
	line("scope", d.Scope)
	switch {
	case d.NoPolicy:
		line("policy", "none (every image is refused)")
	case d.PolicyScope == "":
		line("policy", "the default: "+requirementText(d.Requirement))
	default:
		line("policy", "scope "+d.PolicyScope+": "+requirementText(d.Requirement))
	}
	if d.Requirement.Type == policy.Signed {
		line("signatures", fmt.Sprintf("%d found", len(d.Signatures)))
		w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		for _, s := range d.Signatures {
			status := s.Error
			if s.Verified {
				status = "verified by trusted key " + policy.ShortID(s.KeyID)
			}
			fmt.Fprintf(w, "  %s\t%s\t%s\n", s.Format, s.Location, status)
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	verdict := "accepted"
	if !d.Accepted {
		verdict = "refused"
	}
	line("decision", verdict)
	line("reason", d.Reason)
	return nil
}

func requirementText(r policy.Requirement) string {
	if r.Type != policy.Signed {
		return string(r.Type)
	}
	ids := make([]string, len(r.Keys))
	for i, k := range r.Keys {
		ids[i] = policy.ShortID(k)
	}
	return fmt.Sprintf("%s (%s)", r, strings.Join(ids, ", "))
}
