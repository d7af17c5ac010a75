package k8s

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"
)

// PodStart is one pod's start as the API server's watchers see it: from
// its creation (the ADDED event) to its phase Running, which the kubelet
// reports once its container runs.
type PodStart struct {
	Name    string
	Latency time.Duration
	// Bound is the part after the scheduler bound the pod to the node
	// (the first event with its node name): the kubelet's and the
	// runtime's share.
	Bound time.Duration
}

// MeasurePodStarts creates n pods of the busybox look-alike one after the
// other (each once the previous one runs; a first, unmeasured pod pulls
// the images) and returns each one's start, then deletes them. Each pod
// gets at most 2 minutes. With noToken the pods mount no service account
// token: the kubelet's volume manager, which takes about 300 ms to set
// up the token's volume whatever the runtime, is left out.
func (c *Cluster) MeasurePodStarts(ctx context.Context, n int, noToken bool) ([]PodStart, error) {
	defer c.deleteBench(context.Background())
	events, stop, err := c.watchPods(ctx, "bench=pod-start")
	if err != nil {
		return nil, err
	}
	defer stop()
	added, bound := map[string]time.Time{}, map[string]time.Time{}
	var out []PodStart
	for i := 0; i <= n; i++ {
		name := fmt.Sprintf("bench-%02d", i)
		if noToken {
			name = fmt.Sprintf("bench-notoken-%02d", i)
		}
		if err := c.createPod(ctx, name, noToken); err != nil {
			return nil, err
		}
		deadline := time.After(2 * time.Minute)
	wait:
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					return nil, fmt.Errorf("k8s: the watch of the bench pods ended")
				}
				if ev.Type == "ADDED" {
					if _, seen := added[ev.Object.Metadata.Name]; !seen {
						added[ev.Object.Metadata.Name] = ev.at
					}
				}
				if _, seen := bound[ev.Object.Metadata.Name]; !seen && ev.Object.Spec.NodeName != "" {
					bound[ev.Object.Metadata.Name] = ev.at
				}
				if ev.Object.Metadata.Name == name && ev.Object.Status.Phase == "Running" {
					if i > 0 {
						out = append(out, PodStart{Name: name, Latency: ev.at.Sub(added[name]), Bound: ev.at.Sub(bound[name])})
					}
					break wait
				}
			case <-deadline:
				return nil, fmt.Errorf("k8s: pod %s not Running after 2 minutes", name)
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	return out, nil
}

// Percentile is the p-th percentile (nearest rank) of the latencies;
// BoundPercentile that of their part after the binding.
func Percentile(ps []PodStart, p float64) time.Duration {
	return percentile(ps, p, func(s PodStart) time.Duration { return s.Latency })
}

// BoundPercentile is the p-th percentile of PodStart.Bound.
func BoundPercentile(ps []PodStart, p float64) time.Duration {
	return percentile(ps, p, func(s PodStart) time.Duration { return s.Bound })
}

func percentile(ps []PodStart, p float64, f func(PodStart) time.Duration) time.Duration {
	if len(ps) == 0 {
		return 0
	}
	ds := make([]time.Duration, len(ps))
	for i, s := range ps {
		ds[i] = f(s)
	}
	slices.Sort(ds)
	k := int(p/100*float64(len(ds))+0.999999) - 1
	return ds[max(0, min(k, len(ds)-1))]
}

type podEvent struct {
	Type   string `json:"type"`
	Object Pod    `json:"object"`
	at     time.Time
}

// watchPods streams the default namespace's pod events matching selector.
func (c *Cluster) watchPods(ctx context.Context, selector string) (<-chan podEvent, func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.Server+"/api/v1/namespaces/default/pods?watch=1&labelSelector="+selector, nil)
	hc := &http.Client{Transport: c.admin.Transport} // no timeout: a stream
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, nil, fmt.Errorf("k8s: watch pods: %s: %s", resp.Status, b)
	}
	ch := make(chan podEvent, 256)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		dec := json.NewDecoder(resp.Body)
		for {
			var ev podEvent
			if err := dec.Decode(&ev); err != nil {
				return
			}
			ev.at = time.Now()
			select {
			case ch <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, cancel, nil
}

func (c *Cluster) createPod(ctx context.Context, name string, noToken bool) error {
	pod := map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name, "labels": map[string]string{"bench": "pod-start"}},
		"spec": map[string]any{
			"automountServiceAccountToken":  !noToken,
			"terminationGracePeriodSeconds": 1,
			"containers": []map[string]any{{
				"name": "main", "image": BusyboxImage, "imagePullPolicy": "IfNotPresent",
				"command": []string{"sleep", "3600"},
			}},
		},
	}
	return c.send(ctx, http.MethodPost, "/api/v1/namespaces/default/pods", pod)
}

func (c *Cluster) deleteBench(ctx context.Context) {
	_ = c.send(ctx, http.MethodDelete, "/api/v1/namespaces/default/pods?labelSelector=bench%3Dpod-start&gracePeriodSeconds=0", nil)
}

// send is a request with a JSON body as the admin; a status above 299 is
// an error.
func (c *Cluster) send(ctx context.Context, method, path string, body any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(ctx, method, c.Server+path, r)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.admin.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode > 299 {
		return fmt.Errorf("k8s: %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	return nil
}
