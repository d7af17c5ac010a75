package stage0

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/karman-project/karman/isolators/cgroups"
	"github.com/karman-project/karman/stage1/poddir"
)

// AppInfo is what list and status report about an app.
type AppInfo struct {
	Name        string `json:"name"`
	Image       string `json:"image"`
	ImageDigest string `json:"imageDigest"`
	// State is AppCreated, AppRunning or AppExited (an app of a pod that
	// ended is exited).
	State    string    `json:"state"`
	PID      int       `json:"pid,omitempty"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	ExitCode *int      `json:"exitCode,omitempty"`
	Signal   string    `json:"signal,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	// Restarts is how many times the app was started again after it had
	// exited (StartApp).
	Restarts int `json:"restarts"`
}

// NetworkInfo is one network of a pod (filled by the network layer).
type NetworkInfo struct {
	Name      string   `json:"name"`
	Interface string   `json:"interface,omitempty"`
	Addresses []string `json:"addresses,omitempty"`
	Gateway   string   `json:"gateway,omitempty"`
}

// PodInfo is what list and status report about a pod.
type PodInfo struct {
	UUID     string        `json:"uuid"`
	Name     string        `json:"name,omitempty"`
	State    State         `json:"state"`
	Created  time.Time     `json:"created,omitzero"`
	Started  time.Time     `json:"started,omitzero"`
	Finished time.Time     `json:"finished,omitzero"`
	ExitCode *int          `json:"exitCode,omitempty"`
	Apps     []AppInfo     `json:"apps"`
	Networks []NetworkInfo `json:"networks"`
	// Labels are PodSpec.Labels.
	Labels map[string]string `json:"labels,omitempty"`
	// Resources is each running app's usage, read from its cgroup.
	Resources map[string]cgroups.Stats `json:"resources,omitempty"`
}

func modTime(path string) time.Time {
	if fi, err := os.Stat(path); err == nil {
		return fi.ModTime()
	}
	return time.Time{}
}

// info reads what a pod directory says about the pod.
func (r *Runtime) info(p pod) PodInfo { return r.readInfo(p, true) }

// readInfo is info, reading the apps' cgroup usage only with usage (it
// costs a few dozen file reads per app).
func (r *Runtime) readInfo(p pod, usage bool) PodInfo {
	pi := PodInfo{UUID: p.uuid, State: p.state(), Networks: []NetworkInfo{}, Apps: []AppInfo{}}
	// The labels are the first file of a pod: an embryo has them too.
	if b, err := os.ReadFile(filepath.Join(p.path, LabelsFile)); err == nil {
		json.Unmarshal(b, &pi.Labels)
	}
	pd, err := poddir.Load(p.path)
	if err != nil {
		return pi // an embryo, or a pod being removed
	}
	pi.Name = pd.Name
	pi.Networks = networkInfo(p.path)
	pi.Created = modTime(filepath.Join(p.path, poddir.PodFile))
	pi.Started = modTime(filepath.Join(p.path, poddir.Started))
	pi.Finished = modTime(filepath.Join(p.path, poddir.Finished))
	if b, err := os.ReadFile(filepath.Join(p.path, poddir.ExitFile)); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			pi.ExitCode = &n
		}
	}
	running := pi.State == Running
	if running && usage {
		pi.Resources = appUsage(p.path, pd)
	}
	for i, st := range poddir.ReadAppStatus(p.path, pd) {
		a := pd.Apps[i]
		ai := AppInfo{Name: a.Name, Image: a.Image, ImageDigest: a.ImageDigest, Started: st.Started, Finished: st.Finished, Signal: st.Signal, Reason: st.Reason, Restarts: st.Restarts}
		switch {
		case st.Exited || !running && !st.Started.IsZero():
			ai.State = AppExited
		case st.Started.IsZero():
			ai.State = AppCreated
		default:
			ai.State = AppRunning
		}
		if running && !st.Exited {
			ai.PID = st.PID
		}
		if st.Exited {
			code := st.ExitCode
			ai.ExitCode = &code
		} else if !running && !st.Started.IsZero() && ai.Reason == "" {
			ai.Reason = "killed with the pod"
		}
		pi.Apps = append(pi.Apps, ai)
	}
	return pi
}

// List returns every pod, oldest first.
func (r *Runtime) List(ctx context.Context) ([]PodInfo, error) {
	var out []PodInfo
	for _, sd := range stateDirs {
		ents, err := os.ReadDir(filepath.Join(r.dir, "pods", sd))
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			out = append(out, r.info(pod{uuid: e.Name(), stateDir: sd, path: r.podPath(sd, e.Name())}))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// Status returns one pod's information.
func (r *Runtime) Status(_ context.Context, uuid string) (PodInfo, error) {
	p, err := r.find(uuid)
	if err != nil {
		return PodInfo{}, err
	}
	return r.info(p), nil
}
