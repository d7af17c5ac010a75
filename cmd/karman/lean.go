//go:build lean

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/karman-project/karman/internal/exe"
	"github.com/karman-project/karman/stage0"
)

// This is the lean karman (built with -tags lean): the pod commands
// without the registry client, signature verification and the agent's
// server, whose packages would cost every `karman run` their
// initialisation (docs/pods.md). fullName, installed beside it, carries
// them: the lean karman execs it for those commands, and runs it to fetch
// the images that a pod needs.

// fullName is the complete karman's file name.
const fullName = "karman-full"

// fullBinary finds karman-full beside this program and checks it.
func fullBinary() (string, error) {
	p, ok := exe.Beside(fullName)
	if !ok {
		return "", fmt.Errorf("%s is not installed beside karman: it carries fetch, trust, verify and agent, and fetches the images that pods need; install it from the same build (make install)", fullName)
	}
	abs, err := exe.Trusted(p)
	if err != nil {
		return "", fmt.Errorf("%s: %w: refusing to run it", fullName, err)
	}
	return abs, nil
}

// fullOnlyCommands stand for the commands of fullOnly: each execs
// karman-full with this command line, which parses its flags.
func fullOnlyCommands(*globals) []*cobra.Command {
	var cmds []*cobra.Command
	for name, short := range fullOnly {
		cmds = append(cmds, &cobra.Command{
			Use:                name,
			Short:              short,
			Long:               short + ".\n\nRun by " + fullName + ", installed beside karman: `karman " + name + " --help` shows its usage.",
			DisableFlagParsing: true,
			RunE: func(*cobra.Command, []string) error {
				full, err := fullBinary()
				if err != nil {
					return err
				}
				err = syscall.Exec(full, append([]string{"karman"}, os.Args[1:]...), os.Environ())
				return fmt.Errorf("exec %s: %w", full, err)
			},
		})
	}
	return cmds
}

// fetcher has karman-full fetch the images that pods need.
func (g *globals) fetcher(*stage0.Runtime) stage0.Fetcher { return fullFetcher{g} }

type fullFetcher struct{ g *globals }

// Fetch runs `karman-full fetch` for ref, with the same data and
// configuration directories, and reads the digest it prints. Its stderr
// is the user's: warnings, progress, and on failure the reason.
func (f fullFetcher) Fetch(ctx context.Context, ref string, o stage0.FetchOptions) (v1.Hash, error) {
	full, err := fullBinary()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("image %s is not in the store: %w", ref, err)
	}
	args := []string{"--dir", f.g.dir, "--config-dir", f.g.configDir}
	if f.g.debug {
		args = append(args, "--debug")
	}
	args = append(args, "fetch")
	var ins []string
	for name, on := range map[string]bool{"http": o.InsecureHTTP, "tls": o.InsecureTLS, "image": o.InsecureImage} {
		if on {
			ins = append(ins, name)
		}
	}
	if len(ins) > 0 {
		slices.Sort(ins)
		args = append(args, "--insecure-options="+strings.Join(ins, ","))
	}
	cmd := exec.CommandContext(ctx, full, append(args, "--", ref)...)
	cmd.Args[0] = "karman"
	// Its failure comes back on a pipe, to be this command's one line.
	er, ew, err := os.Pipe()
	if err != nil {
		return v1.Hash{}, err
	}
	defer er.Close()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	cmd.ExtraFiles = []*os.File{ew}
	cmd.Env = append(os.Environ(), errorFDEnv+"=3")
	err = cmd.Start()
	ew.Close()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("fetching image %s: %w", ref, err)
	}
	msg, _ := io.ReadAll(io.LimitReader(er, 64<<10))
	if err := cmd.Wait(); err != nil {
		if line := strings.TrimSpace(string(msg)); line != "" {
			return v1.Hash{}, errors.New(strings.TrimPrefix(line, "karman: "))
		}
		return v1.Hash{}, fmt.Errorf("fetching image %s: %s failed: %w", ref, fullName, err)
	}
	d, err := v1.NewHash(strings.TrimSpace(out.String()))
	if err != nil {
		return v1.Hash{}, fmt.Errorf("fetching image %s: %s printed %q, not a digest: %w", ref, fullName, out.String(), err)
	}
	return d, nil
}
