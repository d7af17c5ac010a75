//go:build !lean

package main

import (
	"github.com/spf13/cobra"

	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/stage0/pull"
)

// fullOnlyCommands are the commands of fullOnly, carried by this build:
// the complete karman (installed as karman-full beside the lean one, or
// alone).
func fullOnlyCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{newFetchCommand(g), newTrustCommand(g), newVerifyCommand(g), newAgentCommand(g)}
}

// fetcher fetches the images that pods need in this process.
func (g *globals) fetcher(rt *stage0.Runtime) stage0.Fetcher {
	return pull.Local{Store: rt.Images(), ConfigDir: g.configDir, Log: g.log, Warn: g.warn}
}
