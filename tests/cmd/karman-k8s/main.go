package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/karman-project/karman/tests/k8s"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "karman-k8s:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("karman-k8s", flag.ContinueOnError)
	var o k8s.Options
	fs.StringVar(&o.CRISocket, "cri-socket", "", "the runtime's CRI `socket`")
	fs.StringVar(&o.Dir, "dir", "", "a private `directory` for the cluster")
	fs.StringVar(&o.BinDir, "bin-dir", k8s.BinDir, "the Kubernetes programs")
	fs.StringVar(&o.Etcd, "etcd", k8s.Etcd(), "etcd")
	pods := fs.Int("pods", 20, "bench: pods measured")
	kubeletV := fs.Int("kubelet-v", 0, "the kubelet's log verbosity (--v)")
	name := fs.String("runtime", "karman", "bench: the runtime's name in the report")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || (fs.Arg(0) != "demo" && fs.Arg(0) != "bench") {
		return errors.New("usage: karman-k8s --cri-socket SOCK --dir DIR demo|bench")
	}
	if *pods < 1 || *pods > 200 {
		return fmt.Errorf("--pods %d: want 1 to 200", *pods)
	}
	o.Log = os.Stderr
	if *kubeletV > 0 {
		o.KubeletArgs = []string{fmt.Sprintf("--v=%d", *kubeletV)}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	start := time.Now()
	c, err := k8s.Start(ctx, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "karman-k8s: node %s Ready %.1f s after the start\n", c.NodeName, time.Since(start).Seconds())
	var jobErr error
	if fs.Arg(0) == "demo" {
		jobErr = demo(ctx, c)
	} else {
		jobErr = bench(ctx, c, *pods, *name)
	}
	return errors.Join(jobErr, c.Stop())
}

func demo(ctx context.Context, c *k8s.Cluster) error {
	step := func(stdin string, args ...string) (string, error) {
		fmt.Printf("$ kubectl %s\n", strings.Join(args, " "))
		var in io.Reader
		if stdin != "" {
			in = strings.NewReader(stdin)
		}
		out, err := c.Kubectl(ctx, in, args...)
		fmt.Print(string(out))
		return string(out), err
	}
	if _, err := step(k8s.WebDeployment("web", 3), "apply", "-f", "-"); err != nil {
		return err
	}
	if _, err := step("", "rollout", "status", "deployment/web", "--timeout=180s"); err != nil {
		return err
	}
	if _, err := step("", "get", "nodes,pods", "-o", "wide"); err != nil {
		return err
	}
	if _, err := step("", "scale", "deployment/web", "--replicas=0"); err != nil {
		return err
	}
	if _, err := c.WaitPods(ctx, "app=web", 2*time.Minute, func(ps []k8s.Pod) bool { return len(ps) == 0 }); err != nil {
		return err
	}
	_, err := step("", "get", "deployment/web")
	return err
}

func bench(ctx context.Context, c *k8s.Cluster, n int, name string) error {
	for _, v := range []struct {
		label   string
		noToken bool
	}{{"pod-start", false}, {"pod-start-notoken", true}} {
		ps, err := c.MeasurePodStarts(ctx, n, v.noToken)
		if err != nil {
			return err
		}
		fmt.Printf("%s %s: pods=%d p50=%.0fms p95=%.0fms bound-p50=%.0fms bound-p95=%.0fms\n", v.label, name, len(ps),
			ms(k8s.Percentile(ps, 50)), ms(k8s.Percentile(ps, 95)), ms(k8s.BoundPercentile(ps, 50)), ms(k8s.BoundPercentile(ps, 95)))
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
