package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Pod is the part of a Pod object the tests read.
type Pod struct {
	Metadata struct {
		Name              string            `json:"name"`
		Namespace         string            `json:"namespace"`
		Labels            map[string]string `json:"labels"`
		CreationTimestamp time.Time         `json:"creationTimestamp"`
	} `json:"metadata"`
	Spec struct {
		NodeName string `json:"nodeName"`
	} `json:"spec"`
	Status struct {
		Phase             string            `json:"phase"`
		PodIP             string            `json:"podIP"`
		Conditions        []PodCondition    `json:"conditions"`
		ContainerStatuses []ContainerStatus `json:"containerStatuses"`
	} `json:"status"`
}

// PodCondition is one of a pod's conditions.
type PodCondition struct {
	Type   string `json:"type"`
	Status string `json:"status"`
}

// ContainerStatus is one container's status.
type ContainerStatus struct {
	Name         string `json:"name"`
	ContainerID  string `json:"containerID"`
	Ready        bool   `json:"ready"`
	RestartCount int    `json:"restartCount"`
	State        struct {
		Waiting *struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"waiting"`
		Running *struct {
			StartedAt time.Time `json:"startedAt"`
		} `json:"running"`
		Terminated *struct {
			Reason   string `json:"reason"`
			ExitCode int    `json:"exitCode"`
		} `json:"terminated"`
	} `json:"state"`
}

// Ready reports the pod's Ready condition.
func (p *Pod) Ready() bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

// Pods lists the pods of the default namespace whose labels match
// selector ("" for all).
func (c *Cluster) Pods(ctx context.Context, selector string) ([]Pod, error) {
	args := []string{"get", "pods", "-o", "json"}
	if selector != "" {
		args = append(args, "-l", selector)
	}
	out, err := c.Kubectl(ctx, nil, args...)
	if err != nil {
		return nil, err
	}
	var l struct {
		Items []Pod `json:"items"`
	}
	if err := json.Unmarshal(out, &l); err != nil {
		return nil, fmt.Errorf("kubectl get pods: %w", err)
	}
	return l.Items, nil
}

// WaitPods polls (every 500 ms, at most timeout) until ok holds for the
// pods matching selector; it returns the last list.
func (c *Cluster) WaitPods(ctx context.Context, selector string, timeout time.Duration, ok func([]Pod) bool) ([]Pod, error) {
	deadline := time.Now().Add(timeout)
	var last []Pod
	var err error
	for time.Now().Before(deadline) {
		if err = c.exited(); err != nil {
			return last, err
		}
		if last, err = c.Pods(ctx, selector); err == nil && ok(last) {
			return last, nil
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	if err != nil {
		return last, err
	}
	return last, fmt.Errorf("pods %q: not as wanted after %s", selector, timeout)
}

// AllReady is a WaitPods condition: n pods, each Ready.
func AllReady(n int) func([]Pod) bool {
	return func(ps []Pod) bool {
		if len(ps) != n {
			return false
		}
		for i := range ps {
			if !ps[i].Ready() {
				return false
			}
		}
		return true
	}
}
