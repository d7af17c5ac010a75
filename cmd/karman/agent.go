//go:build !lean

package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/karman-project/karman/agentapi"
	"github.com/karman-project/karman/agentapi/cri"
	"github.com/karman-project/karman/agentapi/server"
	"github.com/karman-project/karman/stage0/pull"
)

func newAgentCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: fullOnly["agent"],
		Long: `The node agent serves the API of docs/agent.md on a unix socket (owner-only,
by default ` + server.DefaultSocket + `) or on TCP with TLS and client authentication,
and the Kubernetes CRI on --cri-socket (owner-only, by default ` + cri.DefaultSocket + `;
empty: not served) for a kubelet. Its tasks, sandboxes and containers are
ordinary pods: they keep running when the agent stops.`,
		Args: cobra.NoArgs,
	}
	var lo server.ListenOptions
	f := cmd.Flags()
	f.StringVar(&lo.Addr, "listen", "unix://"+server.DefaultSocket, "unix:///path/to.sock or tcp://HOST:PORT (TCP needs TLS and client authentication)")
	f.StringVar(&lo.CertFile, "tls-cert", "", "the agent's TLS certificate (PEM), for tcp://")
	f.StringVar(&lo.KeyFile, "tls-key", "", "the agent's TLS key (PEM)")
	f.StringVar(&lo.ClientCAFile, "client-ca", "", "CA certificate (PEM) that signs the client certificates to accept")
	f.StringVar(&lo.TokenFile, "token-file", "", "file holding a bearer token clients may present")
	criSocket := f.String("cri-socket", cri.DefaultSocket, "the unix socket the Kubernetes CRI is served on (empty: not served)")
	criStream := f.String("cri-stream-address", "127.0.0.1:0", "the loopback HOST:PORT of the CRI's streaming server (exec, attach, port-forward; port 0: any free port)")
	master := f.String("master", "", "URL of a master to register with and heartbeat to")
	endpoint := f.String("endpoint", "", "the address sent to the master (default: --listen when it is TCP)")
	stateDir := f.String("state-dir", "", "the agent's records and events (default DIR/agent)")
	labels := f.StringArray("label", nil, "a node label KEY=VALUE (repeatable)")
	volumeDirs := f.StringArray("volume-dir", nil, "a host directory whose contents tasks may mount (repeatable; default none)")
	reserveCPU := f.String("reserve-cpu", "", "CPU kept for the system, as 500m or 0.5 (default none)")
	parallel := f.Int("parallel-starts", 0, "pods started at once at most (0: twice the CPUs, at least 4)")
	reserveMem := f.String("reserve-memory", "", "memory kept for the system, as 512M (default 256M, at most a tenth)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if *parallel < 0 {
			return fmt.Errorf("--parallel-starts %d: use a positive number, or 0 for the default (twice the CPUs, at least 4)", *parallel)
		}
		cfg := server.Config{Version: version, Logger: g.log, Master: *master, Endpoint: *endpoint, VolumeDirs: *volumeDirs, DataDir: g.dir,
			StateDir: *stateDir, ParallelStarts: *parallel, Labels: map[string]string{}, Reserved: agentapi.Resources{MemoryBytes: -1}}
		if cfg.StateDir == "" {
			cfg.StateDir = filepath.Join(g.dir, "agent")
		}
		if cfg.Endpoint == "" && strings.HasPrefix(lo.Addr, "tcp://") {
			cfg.Endpoint = lo.Addr
		}
		for _, kv := range *labels {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return fmt.Errorf("--label %q: use KEY=VALUE", kv)
			}
			cfg.Labels[k] = v
		}
		var err error
		if *reserveCPU != "" {
			if cfg.Reserved.CPUMillis, err = parseMillicores(*reserveCPU); err != nil {
				return fmt.Errorf("--reserve-cpu: %w", err)
			}
		}
		if *reserveMem != "" {
			if cfg.Reserved.MemoryBytes, err = parseBytes(*reserveMem); err != nil {
				return fmt.Errorf("--reserve-memory: %w", err)
			}
		}
		// More Go processors than CPUs: an API request then waits for the
		// kernel's scheduler only, not also behind the goroutines that
		// start pods (measured in tests/bench/agent.sh).
		if os.Getenv("GOMAXPROCS") == "" {
			runtime.GOMAXPROCS(max(8, 4*runtime.NumCPU()))
		}
		// Listen first: an agent that cannot serve (say, TCP without
		// authentication) must not touch anything.
		l, auth, err := server.Listen(lo)
		if err != nil {
			return err
		}
		defer l.Close()
		var criL net.Listener
		if *criSocket != "" {
			if criL, err = server.ListenUnix(*criSocket, "CRI socket", "--cri-socket "); err != nil {
				return err
			}
			defer criL.Close()
		}
		if cfg.Runtime, err = g.runtime(); err != nil {
			return err
		}
		cfg.Runtime.Warn = func(msg string) { g.log.Warn(msg) }
		ctx := cmd.Context()
		a, err := server.New(ctx, cfg)
		if err != nil {
			return err
		}
		defer a.Close()
		errc := make(chan error, 1)
		if criL != nil {
			loc := pull.Local{Store: cfg.Runtime.Images(), ConfigDir: g.configDir, Log: g.log, Warn: g.warn}
			cs, err := cri.New(ctx, cri.Config{Runtime: cfg.Runtime, StateDir: filepath.Join(cfg.StateDir, "cri"),
				Version: version, Logger: g.log, Pull: cri.LocalPull(loc), StreamAddress: *criStream})
			if err != nil {
				return err
			}
			a.ShareWith(cs)
			go func() { errc <- cs.Serve(ctx, criL) }()
			g.log.Info("agent serving the CRI", "socket", *criSocket)
		}
		go a.Run(ctx)
		g.log.Info("agent serving", "listen", lo.Addr, "state", cfg.StateDir)
		go func() { errc <- a.Serve(ctx, l, auth) }()
		return <-errc
	}
	return cmd
}
