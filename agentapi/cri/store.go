package cri

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/internal/atomicfile"
)

// The CRI's records: one JSON file per sandbox (sandboxes/ID.json) and
// per container (containers/ID.json) in the state directory, each
// replaced atomically, written before the pod or app it describes is
// made and removed after it is gone. What changes as things run (states,
// exit codes, times) is not recorded: it is read from the pods, which
// keep it across agent restarts.

// recordVersion is the version of the records' format: a record of
// another version (a newer karman's) is refused on load, not guessed at.
const recordVersion = 1

// sandboxRecord is what the CRI asked of a sandbox; its id is its pod's
// UUID.
type sandboxRecord struct {
	Version int       `json:"version"`
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	// Config is the request's PodSandboxConfig (protojson).
	Config json.RawMessage `json:"config"`
	// RuntimeHandler is the request's (only the default is served).
	RuntimeHandler string `json:"runtimeHandler,omitempty"`
	// Stopped: StopPodSandbox has run (a stopped sandbox is never
	// ready again).
	Stopped bool `json:"stopped,omitempty"`

	config *runtimeapi.PodSandboxConfig
}

// containerRecord is what the CRI asked of a container: it is the app
// App of the sandbox's pod.
type containerRecord struct {
	Version   int       `json:"version"`
	ID        string    `json:"id"`
	SandboxID string    `json:"sandboxId"`
	App       string    `json:"app"`
	Created   time.Time `json:"created"`
	// Image is the image as the request named it, ImageRef its manifest
	// digest (sha256:...) and ImageName the name it is reported by: the
	// one the user gave, or else the image's first name.
	Image     string `json:"image"`
	ImageRef  string `json:"imageRef"`
	ImageName string `json:"imageName,omitempty"`
	// ImageVolumes are its image volumes, rendered in the pod.
	ImageVolumes []imageVolume `json:"imageVolumes,omitempty"`
	// LogPath is the absolute path of its log (the sandbox's log
	// directory and the container's log path), empty for none.
	LogPath string `json:"logPath,omitempty"`
	// Config is the request's ContainerConfig (protojson); Resources the
	// last resources applied (UpdateContainerResources).
	Config    json.RawMessage `json:"config"`
	Resources json.RawMessage `json:"resources,omitempty"`

	config    *runtimeapi.ContainerConfig
	resources *runtimeapi.LinuxContainerResources
}

type store struct{ dir string }

func openStore(dir string) (*store, error) {
	for _, d := range []string{"sandboxes", "containers"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("cri state directory: %w", err)
		}
	}
	return &store{dir: dir}, nil
}

func (st *store) path(kind, id string) string { return filepath.Join(st.dir, kind, id+".json") }

func (st *store) saveSandbox(r *sandboxRecord) error {
	b, err := protojson.Marshal(r.config)
	if err != nil {
		return err
	}
	r.Config, r.Version = b, recordVersion
	return st.write("sandboxes", r.ID, r)
}

func (st *store) saveContainer(r *containerRecord) error {
	b, err := protojson.Marshal(r.config)
	if err != nil {
		return err
	}
	r.Config, r.Version = b, recordVersion
	r.Resources = nil
	if r.resources != nil {
		if r.Resources, err = protojson.Marshal(r.resources); err != nil {
			return err
		}
	}
	return st.write("containers", r.ID, r)
}

func (st *store) write(kind, id string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(st.path(kind, id), b, 0o600); err != nil {
		return fmt.Errorf("cri record %s/%s: %w", kind, id, err)
	}
	return nil
}

func (st *store) remove(kind, id string) error {
	if err := os.Remove(st.path(kind, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cri record %s/%s: %w", kind, id, err)
	}
	return nil
}

// load reads every record; the unreadable ones are reported and skipped,
// and their ids returned in bad (by kind), so that recovery leaves alone
// what they may describe.
func (st *store) load() ([]*sandboxRecord, []*containerRecord, map[string]map[string]bool, []error) {
	var sbs []*sandboxRecord
	var cs []*containerRecord
	var errs []error
	bad := map[string]map[string]bool{"sandboxes": {}, "containers": {}}
	each := func(kind string, fn func(b []byte) error) {
		ents, err := os.ReadDir(filepath.Join(st.dir, kind))
		if err != nil {
			errs = append(errs, err)
			return
		}
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".json") || atomicfile.IsTemp(e.Name()) {
				continue
			}
			b, err := os.ReadFile(filepath.Join(st.dir, kind, e.Name()))
			if err == nil {
				err = fn(b)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("cri record %s/%s: %w", kind, e.Name(), err))
				bad[kind][strings.TrimSuffix(e.Name(), ".json")] = true
			}
		}
	}
	each("sandboxes", func(b []byte) error {
		r := &sandboxRecord{config: &runtimeapi.PodSandboxConfig{}}
		if err := decodeStrict(b, r); err != nil {
			return err
		}
		if err := checkVersion(r.Version); err != nil {
			return err
		}
		if err := protojson.Unmarshal(r.Config, r.config); err != nil {
			return err
		}
		sbs = append(sbs, r)
		return nil
	})
	each("containers", func(b []byte) error {
		r := &containerRecord{config: &runtimeapi.ContainerConfig{}}
		if err := decodeStrict(b, r); err != nil {
			return err
		}
		if err := checkVersion(r.Version); err != nil {
			return err
		}
		if err := protojson.Unmarshal(r.Config, r.config); err != nil {
			return err
		}
		if len(r.Resources) > 0 {
			r.resources = &runtimeapi.LinuxContainerResources{}
			if err := protojson.Unmarshal(r.Resources, r.resources); err != nil {
				return err
			}
		}
		cs = append(cs, r)
		return nil
	})
	return sbs, cs, bad, errs
}

func checkVersion(v int) error {
	if v != recordVersion {
		return fmt.Errorf("version %d: this karman reads version %d; it was written by another karman, run that one", v, recordVersion)
	}
	return nil
}

// decodeStrict decodes a record, refusing fields it does not know.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
