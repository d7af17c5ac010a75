package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/karman-project/karman/agentapi"
	"github.com/karman-project/karman/internal/atomicfile"
)

// record is a task as the agent keeps it on disk: the API's Task plus
// what the agent needs to recover it.
type record struct {
	agentapi.Task
	// SpecHash identifies the spec for idempotent launches.
	SpecHash string `json:"specHash"`
	// Interrupted marks a task that failed because the agent stopped
	// while launching it: a PUT of the same spec launches it again.
	Interrupted bool `json:"interrupted,omitempty"`
}

// taskStore keeps one JSON file per task under dir.
type taskStore struct{ dir string }

func (s taskStore) path(id string) string { return filepath.Join(s.dir, id+".json") }

func (s taskStore) save(r *record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := writeAtomic(s.path(r.ID), b); err != nil {
		return fmt.Errorf("task %s: saving its record: %w", r.ID, err)
	}
	return nil
}

func (s taskStore) remove(id string) error {
	if err := atomicfile.Remove(s.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("task %s: %w", id, err)
	}
	return nil
}

// load reads every record; unreadable ones are reported, not fatal.
// It removes what saves cut off by a crash left behind.
func (s taskStore) load() ([]*record, []error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, []error{err}
	}
	var out []*record
	var errs []error
	for _, e := range ents {
		if atomicfile.IsTemp(e.Name()) { // a save cut off by a crash
			os.Remove(filepath.Join(s.dir, e.Name()))
			continue
		}
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r := &record{}
		if err := json.Unmarshal(b, r); err != nil || r.ID != name {
			errs = append(errs, fmt.Errorf("task record %s: unreadable (%v); it is ignored", e.Name(), err))
			continue
		}
		out = append(out, r)
	}
	return out, errs
}

// writeAtomic replaces path with data, durably (docs/agent.md,
// "Durability").
func writeAtomic(path string, data []byte) error {
	return atomicfile.WriteFile(path, data, 0o600)
}
