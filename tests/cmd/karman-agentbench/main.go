package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/karman-project/karman/agentapi"
)

type result struct {
	Tasks       int     `json:"tasks"`
	Concurrency int     `json:"concurrency"`
	Seconds     float64 `json:"seconds"`
	TasksPerSec float64 `json:"tasksPerSecond"`
	NodeGets    int     `json:"nodeGets"`
	NodeP50ms   float64 `json:"nodeP50ms"`
	NodeP99ms   float64 `json:"nodeP99ms"`
	NodeMaxms   float64 `json:"nodeMaxms"`
}

func main() {
	addr := flag.String("agent", "", "agent address (unix:///path)")
	image := flag.String("image", "", "image of the tasks")
	n := flag.Int("n", 100, "tasks")
	conc := flag.Int("concurrency", 100, "launches in flight")
	prefix := flag.String("prefix", "bench", "task id prefix")
	flag.Parse()
	if err := run(*addr, *image, *prefix, *n, *conc); err != nil {
		fmt.Fprintln(os.Stderr, "karman-agentbench:", err)
		os.Exit(1)
	}
}

func run(addr, image, prefix string, n, conc int) error {
	c, err := agentapi.NewClient(addr, agentapi.ClientOptions{})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	spec := agentapi.TaskSpec{Image: image, Command: []string{"/bin/sleep", "100000"}, Networks: []string{"none"}}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	defer cleanup(c, ids)

	// GET /v1/node in a loop while the launches run (bounded: it stops
	// with them, and after 100000 requests at most).
	stop := make(chan struct{})
	var lat []time.Duration
	var pollErr error
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		for len(lat) < 100000 {
			select {
			case <-stop:
				return
			default:
			}
			t0 := time.Now()
			if _, err := c.Node(ctx); err != nil {
				pollErr = err
				return
			}
			lat = append(lat, time.Since(t0))
			time.Sleep(5 * time.Millisecond)
		}
	}()

	start := time.Now()
	var g errgroup.Group
	g.SetLimit(conc)
	for _, id := range ids {
		g.Go(func() error {
			t, err := c.Launch(ctx, id, spec)
			if err == nil && t.State != agentapi.TaskRunning {
				err = fmt.Errorf("task %s is %s (%s)", id, t.State, t.Reason)
			}
			return err
		})
	}
	launchErr := g.Wait()
	elapsed := time.Since(start)
	close(stop)
	<-pollDone
	if launchErr != nil {
		return launchErr
	}
	if pollErr != nil {
		return pollErr
	}
	// Every task runs, as the agent reports it.
	ts, err := c.Tasks(ctx)
	if err != nil {
		return err
	}
	running := 0
	for _, t := range ts {
		if t.State == agentapi.TaskRunning && slices.Contains(ids, t.ID) {
			running++
		}
	}
	if running != n {
		return fmt.Errorf("%d of %d tasks run", running, n)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	r := result{Tasks: n, Concurrency: conc, Seconds: elapsed.Seconds(), TasksPerSec: float64(n) / elapsed.Seconds(),
		NodeGets: len(lat), NodeP50ms: pct(0.50), NodeP99ms: pct(0.99), NodeMaxms: pct(1)}
	return json.NewEncoder(os.Stdout).Encode(r)
}

// cleanup deletes the tasks (killing their pods), a few at a time.
func cleanup(c *agentapi.Client, ids []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var g errgroup.Group
	g.SetLimit(16)
	for _, id := range ids {
		g.Go(func() error {
			if err := c.Delete(ctx, id); err != nil {
				fmt.Fprintln(os.Stderr, "karman-agentbench: delete", id+":", err)
			}
			return nil
		})
	}
	g.Wait()
}
