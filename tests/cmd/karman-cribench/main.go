package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// steps are the lifecycle calls of one iteration, in order.
var steps = []string{"RunPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox"}

// loopResult is what loop writes: per iteration, the duration of each step.
type loopResult struct {
	Endpoint   string      `json:"endpoint"`
	Image      string      `json:"image"`
	Steps      []string    `json:"steps"`
	DurationsS [][]float64 `json:"durationsSeconds"`
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "loop":
		err = loopCmd(os.Args[2:])
	case "report":
		if len(os.Args) != 4 {
			usage()
		}
		err = report(os.Args[2], os.Args[3])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "karman-cribench: %v\n", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: karman-cribench loop --endpoint unix:///PATH --image REF [--n 30] --out FILE.json\n       karman-cribench report DIR-A DIR-B")
	os.Exit(2)
}

func loopCmd(args []string) error {
	fs := flag.NewFlagSet("loop", flag.ContinueOnError)
	endpoint := fs.String("endpoint", "", "the runtime's CRI endpoint, unix:///PATH")
	image := fs.String("image", "", "the container image")
	n := fs.Int("n", 30, "iterations (at most 1000)")
	out := fs.String("out", "", "write the result to `FILE`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *endpoint == "" || *image == "" || *out == "" || *n < 1 || *n > 1000 {
		usage()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	conn, err := grpc.NewClient("passthrough:///"+strings.TrimPrefix(*endpoint, "unix://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", addr)
		}))
	if err != nil {
		return err
	}
	defer conn.Close()
	res, err := loop(ctx, runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn), *image, *n)
	if err != nil {
		return err
	}
	res.Endpoint = *endpoint
	b, err := json.MarshalIndent(res, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(*out, b, 0o644)
}

func loop(ctx context.Context, rc runtimeapi.RuntimeServiceClient, ic runtimeapi.ImageServiceClient, image string, n int) (*loopResult, error) {
	pull, err := ic.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: image}})
	if err != nil {
		return nil, fmt.Errorf("pulling %s: %w", image, err)
	}
	res := &loopResult{Image: image, Steps: steps}
	for i := range n {
		d, err := iteration(ctx, rc, pull.GetImageRef(), i)
		if err != nil {
			return nil, fmt.Errorf("iteration %d: %w", i, err)
		}
		res.DurationsS = append(res.DurationsS, d)
	}
	return res, nil
}

func iteration(ctx context.Context, rc runtimeapi.RuntimeServiceClient, image string, i int) ([]float64, error) {
	var ds []float64
	step := func(f func() error) error {
		t := time.Now()
		err := f()
		ds = append(ds, time.Since(t).Seconds())
		return err
	}
	name := fmt.Sprintf("karman-cribench-%d-%d", os.Getpid(), i)
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Uid: name, Namespace: "karman-cribench"},
		Linux:    &runtimeapi.LinuxPodSandboxConfig{},
	}
	var pod, ctr string
	if err := step(func() error {
		r, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		pod = r.GetPodSandboxId()
		return err
	}); err != nil {
		return nil, fmt.Errorf("RunPodSandbox: %w", err)
	}
	defer rc.RemovePodSandbox(context.WithoutCancel(ctx), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod})
	for _, s := range []struct {
		name string
		f    func() error
	}{
		{"CreateContainer", func() error {
			r, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg, Config: &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
				Image:    &runtimeapi.ImageSpec{Image: image},
				Linux:    &runtimeapi.LinuxContainerConfig{},
			}})
			ctr = r.GetContainerId()
			return err
		}},
		{"StartContainer", func() error {
			_, err := rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr})
			return err
		}},
		{"StopContainer", func() error {
			_, err := rc.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctr, Timeout: 10})
			return err
		}},
		{"RemoveContainer", func() error {
			_, err := rc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctr})
			return err
		}},
		{"StopPodSandbox", func() error {
			_, err := rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod})
			return err
		}},
		{"RemovePodSandbox", func() error {
			_, err := rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod})
			return err
		}},
	} {
		if err := step(s.f); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		// Untimed: the container must really run after StartContainer
		// and have ended after StopContainer.
		want := map[string]runtimeapi.ContainerState{"StartContainer": runtimeapi.ContainerState_CONTAINER_RUNNING, "StopContainer": runtimeapi.ContainerState_CONTAINER_EXITED}
		if w, ok := want[s.name]; ok {
			st, err := rc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctr})
			if err != nil {
				return nil, fmt.Errorf("ContainerStatus after %s: %w", s.name, err)
			}
			if got := st.GetStatus().GetState(); got != w {
				return nil, fmt.Errorf("after %s the container is %v, want %v", s.name, got, w)
			}
		}
	}
	return ds, nil
}

// figures of one directory: name -> mean seconds.
func figures(dir string) (map[string]float64, []string, error) {
	out := map[string]float64{}
	var names []string
	b, err := os.ReadFile(filepath.Join(dir, "loop.json"))
	if err != nil {
		return nil, nil, err
	}
	var lr loopResult
	if err := json.Unmarshal(b, &lr); err != nil {
		return nil, nil, fmt.Errorf("%s/loop.json: %w", dir, err)
	}
	if len(lr.DurationsS) == 0 {
		return nil, nil, fmt.Errorf("%s/loop.json: no iterations", dir)
	}
	var totals []float64
	for _, it := range lr.DurationsS {
		var sum float64
		for j, d := range it {
			out[lr.Steps[j]] += d / float64(len(lr.DurationsS))
			sum += d
		}
		totals = append(totals, sum)
	}
	slices.Sort(totals)
	var mean float64
	for _, t := range totals {
		mean += t / float64(len(totals))
	}
	out["lifecycle (mean)"] = mean
	out["lifecycle (median)"] = totals[len(totals)/2]
	names = append(names, "lifecycle (mean)", "lifecycle (median)")
	names = append(names, lr.Steps...)

	// critest's benchmarks: a datapoint per sample, the durations of its
	// operations; the figure is the mean of the samples' sums.
	files, _ := filepath.Glob(filepath.Join(dir, "*_benchmark_data.json"))
	slices.Sort(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, err
		}
		var r struct {
			OperationsNames []string `json:"operationsNames"`
			Datapoints      []struct {
				OperationsDurationsNs []int64 `json:"operationsDurationsNs"`
			} `json:"datapoints"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", f, err)
		}
		if len(r.Datapoints) == 0 {
			continue
		}
		name := "critest " + strings.TrimSuffix(filepath.Base(f), "_benchmark_data.json") + " (" + strings.Join(r.OperationsNames, "+") + ")"
		var mean float64
		for _, dp := range r.Datapoints {
			var sum int64
			for _, d := range dp.OperationsDurationsNs {
				sum += d
			}
			mean += float64(sum) / 1e9 / float64(len(r.Datapoints))
		}
		out[name] = mean
		names = append(names, name)
	}
	return out, names, nil
}

func report(a, b string) error {
	fa, names, err := figures(a)
	if err != nil {
		return err
	}
	fb, _, err := figures(b)
	if err != nil {
		return err
	}
	la, lb := filepath.Base(a), filepath.Base(b)
	fmt.Printf("%-70s %12s %12s %8s\n", "figure (seconds)", la, lb, la+"/"+lb)
	for _, n := range names {
		vb, ok := fb[n]
		if !ok {
			fmt.Printf("%-70s %12.4f %12s %8s\n", n, fa[n], "-", "-")
			continue
		}
		fmt.Printf("%-70s %12.4f %12.4f %7.2fx\n", n, fa[n], vb, fa[n]/vb)
	}
	return nil
}
