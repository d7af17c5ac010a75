//go:build !lean

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/karman-project/karman/signing/policy"
)

func newTrustCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trust",
		Short: fullOnly["trust"],
		Long: `Manage CONFIG-DIR/policy.json, which says which images may be fetched, and
CONFIG-DIR/keys/, the public keys it trusts. Without a policy every image
is refused. See docs/signing.md.`,
	}
	cmd.AddCommand(newTrustAddCommand(g), newTrustListCommand(g), newTrustRmCommand(g))
	return cmd
}

// scopeArg makes the path of an oci: or docker-archive: scope absolute.
func scopeArg(s string) (string, error) {
	for _, t := range []string{"oci:", "docker-archive:"} {
		if p, ok := strings.CutPrefix(s, t); ok && p != "" {
			abs, err := filepath.Abs(p)
			if err != nil {
				return "", err
			}
			return t + abs, nil
		}
	}
	return s, nil
}

func newTrustAddCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "add --scope SCOPE KEY.pub | add --scope SCOPE --type insecure-accept-anything|reject",
		Short: "Trust a public key for a scope, or set a scope's requirement",
		Long: `Trust the public key in KEY.pub (PEM, as cosign.pub) to sign the images of
SCOPE: the key is copied to CONFIG-DIR/keys/ and SCOPE requires a signature
by one of its keys. policy.json is created if needed, rejecting everything
else. With --type, SCOPE gets that requirement instead and no key.

SCOPE is a registry (HOST[:PORT]), a repository prefix (HOST[:PORT]/PATH),
oci:DIR for OCI layouts under DIR, or docker-archive:FILE. The most specific
scope covering an image decides; keep scopes narrow.`,
		Args: cobra.MaximumNArgs(1),
	}
	scope := cmd.Flags().String("scope", "", "registry, repository prefix, oci:DIR or docker-archive:FILE (required)")
	typ := cmd.Flags().String("type", string(policy.Signed), "requirement: signed (by KEY.pub), insecure-accept-anything or reject")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if *scope == "" {
			return errors.New("--scope is required: say which images the key may sign, as narrowly as you can (e.g. --scope 127.0.0.1:5000/team/app)")
		}
		s, err := scopeArg(*scope)
		if err != nil {
			return err
		}
		c := policy.Config{Dir: g.configDir}
		var ch policy.Change
		switch policy.Type(*typ) {
		case policy.Signed:
			if len(args) != 1 {
				return errors.New("give the public key file: karman trust add --scope SCOPE KEY.pub")
			}
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			if ch, err = c.Trust(cmd.Context(), s, b); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
		case policy.InsecureAcceptAnything, policy.Reject:
			if len(args) != 0 {
				return fmt.Errorf("--type %s takes no key", *typ)
			}
			if ch, err = c.SetRequirement(cmd.Context(), s, policy.Type(*typ)); err != nil {
				return err
			}
		default:
			return fmt.Errorf("--type %q: want signed, insecure-accept-anything or reject", *typ)
		}
		out := cmd.OutOrStdout()
		if ch.Created {
			fmt.Fprintf(out, "created %s (default: reject)\n", c.PolicyPath())
		}
		if ch.Key.ID != "" {
			fmt.Fprintf(out, "key fingerprint %s (%s)\n", ch.Key.ID, policy.KeyType(ch.Key))
		}
		for _, n := range ch.Notes {
			fmt.Fprintln(out, n)
		}
		return nil
	}
	return cmd
}

// trustList is `trust list --format json`.
type trustList struct {
	Policy  string             `json:"policy"`
	Exists  bool               `json:"exists"`
	Default policy.Requirement `json:"default"`
	Scopes  []policy.Scope     `json:"scopes"`
	Keys    []trustedKey       `json:"keys"`
}

type trustedKey struct {
	ID     string   `json:"id"`
	Type   string   `json:"type"`
	Scopes []string `json:"scopes"`
}

func newTrustListCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "list", Aliases: []string{"ls"}, Short: "Show the signature policy and the trusted keys", Args: cobra.NoArgs}
	format := formatFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		c := policy.Config{Dir: g.configDir}
		l := trustList{Policy: c.PolicyPath(), Exists: true, Scopes: []policy.Scope{}, Keys: []trustedKey{}}
		p, err := c.Load()
		if errors.Is(err, policy.ErrNoPolicy) {
			p, l.Exists = policy.New(), false
		} else if err != nil {
			return err
		}
		l.Default = p.Default
		l.Scopes = append(l.Scopes, p.Scopes...)
		stored, err := c.StoredKeys()
		if err != nil {
			return err
		}
		types := map[string]string{}
		for _, k := range stored {
			types[k.ID] = policy.KeyType(k)
		}
		for _, id := range p.KeyIDs() {
			if _, ok := types[id]; !ok {
				types[id] = "missing from " + c.KeysDir()
			}
		}
		for id, t := range types {
			tk := trustedKey{ID: id, Type: t, Scopes: []string{}}
			if slices.Contains(p.Default.Keys, id) {
				tk.Scopes = append(tk.Scopes, "default")
			}
			for _, s := range p.Scopes {
				if slices.Contains(s.Requirement.Keys, id) {
					tk.Scopes = append(tk.Scopes, s.Name)
				}
			}
			l.Keys = append(l.Keys, tk)
		}
		slices.SortFunc(l.Keys, func(a, b trustedKey) int { return strings.Compare(a.ID, b.ID) })
		if *format == "json" {
			return writeJSON(cmd.OutOrStdout(), l)
		}
		out := cmd.OutOrStdout()
		if !l.Exists {
			fmt.Fprintf(out, "%s does not exist: every image is refused. Trust a key with `karman trust add --scope SCOPE KEY.pub`.\n", l.Policy)
			return nil
		}
		w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "SCOPE\tREQUIREMENT\tKEYS")
		row := func(scope string, r policy.Requirement) {
			keys := "-"
			if len(r.Keys) > 0 {
				short := make([]string, len(r.Keys))
				for i, k := range r.Keys {
					short[i] = policy.ShortID(k)
				}
				keys = strings.Join(short, ",")
			}
			fmt.Fprintf(w, "%s\t%s\t%s\n", scope, r.Type, keys)
		}
		for _, s := range p.Scopes {
			row(s.Name, s.Requirement)
		}
		row("(default)", p.Default)
		if err := w.Flush(); err != nil {
			return err
		}
		if len(l.Keys) > 0 {
			fmt.Fprintln(out)
			w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "KEY\tTYPE\tSCOPES")
			for _, k := range l.Keys {
				scopes := strings.Join(k.Scopes, ",")
				if scopes == "" {
					scopes = "-"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\n", k.ID, k.Type, scopes)
			}
			return w.Flush()
		}
		return nil
	}
	return cmd
}

func newTrustRmCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rm KEYID | rm --scope SCOPE | rm KEYID --scope SCOPE",
		Short: "Stop trusting a key, or remove a scope from the policy",
		Long: `With KEYID (any unique prefix, see karman trust list) the key is trusted no
more: it leaves every scope, or only SCOPE with --scope, and the key store
once no scope uses it. A scope left without keys rejects every image. With
--scope alone the scope leaves the policy: its images fall under the next
broader scope or the default. Images already fetched stay in the store;
remove them with karman image rm.`,
		Args: cobra.MaximumNArgs(1),
	}
	scope := cmd.Flags().String("scope", "", "the scope to remove, or to remove KEYID from")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		id := ""
		if len(args) == 1 {
			id = args[0]
		}
		if id == "" && *scope == "" {
			return errors.New("give a key ID or --scope (see `karman trust list`)")
		}
		s := *scope
		if s != "" {
			var err error
			if s, err = scopeArg(s); err != nil {
				return err
			}
		}
		ch, err := policy.Config{Dir: g.configDir}.Untrust(cmd.Context(), id, s)
		if err != nil {
			return err
		}
		for _, n := range ch.Notes {
			fmt.Fprintln(cmd.OutOrStdout(), n)
		}
		return nil
	}
	return cmd
}
