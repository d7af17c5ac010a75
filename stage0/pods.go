package stage0

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/karman-project/karman/image/store"
	"github.com/karman-project/karman/internal/lockfile"
	"github.com/karman-project/karman/isolators/cgroups"
	"github.com/karman-project/karman/stage1/poddir"
)

// Error classes.
var (
	ErrNotFound  = errors.New("pod not found")
	ErrAmbiguous = errors.New("ambiguous pod UUID")
	ErrState     = errors.New("pod is in the wrong state")
	ErrInvalid   = errors.New("invalid pod")
	// ErrGone: the pod was removed, by another process or before; there
	// is nothing to do. It is also an ErrNotFound.
	ErrGone = fmt.Errorf("nothing to do: %w", ErrNotFound)
)

// LabelsFile holds a pod's labels (PodSpec.Labels) as a JSON object. It is
// stage0's, not part of the stage1 interface.
const LabelsFile = "labels.json"

// State of a pod.
type State string

// Pod states.
const (
	Embryo        State = "embryo"
	Preparing     State = "preparing"
	Prepared      State = "prepared"
	Running       State = "running"
	Exited        State = "exited"
	ExitedGarbage State = "exited-garbage"
	Garbage       State = "garbage"
	Deleting      State = "deleting"
)

// state directories, in the order a pod moves through them.
var stateDirs = []string{"embryo", "prepared", "run", "exited-garbage", "garbage"}

// Runtime is the pod store under a data directory, and the image store
// beside it.
type Runtime struct {
	dir       string
	configDir string
	log       *slog.Logger
	images    *store.Store
	// Warn, when set, receives warnings meant for the user, one line
	// each (images fetched without signature verification).
	Warn func(msg string)
	// Fetcher brings into the store the images that Run and Prepare do
	// not find there (per the pull policy); nil: such a pod fails.
	Fetcher Fetcher
	// TeardownCmd, when set, is written into the pod.json of pods with a
	// network for the supervisor to run when the pod ends (stage1
	// Pod.Teardown): the karman binary and TeardownEntrypoint. Unset, a
	// pod's network is undone by gc (or rm).
	TeardownCmd []string
	// CgroupHierarchy is the cgroup hierarchy new pods are made in
	// (--cgroup-hierarchy; "" is cgroups.Auto). A pod records what it
	// got (poddir.Cgroups.V2): later commands on it follow that record.
	CgroupHierarchy cgroups.Hierarchy
}

// New opens (creating as needed) the runtime under dir.
func New(dir, configDir string, log *slog.Logger) (*Runtime, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, d := range stateDirs {
		if err := os.MkdirAll(filepath.Join(dir, "pods", d), 0o700); err != nil {
			return nil, fmt.Errorf("pod store: %w (is --dir %s writable? karman needs root)", err, dir)
		}
	}
	st, err := store.Open(filepath.Join(dir, "images"), log)
	if err != nil {
		return nil, err
	}
	return &Runtime{dir: dir, configDir: configDir, log: log, images: st}, nil
}

// PodDir returns the directory of the pod uuid (a whole UUID or a unique
// prefix), where it is now: its logs/APP.log and apps/APP are there.
func (r *Runtime) PodDir(uuid string) (string, error) {
	p, err := r.find(uuid)
	if err != nil {
		return "", err
	}
	return p.path, nil
}

// Images returns the image store.
func (r *Runtime) Images() *store.Store { return r.images }

func (r *Runtime) podPath(stateDir, uuid string) string {
	return filepath.Join(r.dir, "pods", stateDir, uuid)
}

// pod is a located pod directory.
type pod struct {
	uuid     string
	stateDir string
	path     string
	// spec is the pod's pod.json when this process wrote it (create),
	// so that starting the pod need not read it back; else nil.
	spec *poddir.Pod
}

// find locates the pod with the given UUID or unique UUID prefix.
func (r *Runtime) find(prefix string) (pod, error) {
	prefix = strings.ToLower(strings.TrimSpace(prefix))
	if prefix == "" {
		return pod{}, fmt.Errorf("empty pod UUID: %w", ErrNotFound)
	}
	if len(prefix) == 36 && !strings.Contains(prefix, "/") {
		// A whole UUID: look it up directly instead of reading every
		// state directory (the agent does this for each of its tasks).
		if p, err := r.relocate(pod{uuid: prefix}); err == nil {
			return p, nil
		}
	}
	var found []pod
	seen := map[string]bool{}
	for _, sd := range stateDirs {
		ents, err := os.ReadDir(filepath.Join(r.dir, "pods", sd))
		if err != nil {
			return pod{}, err
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), prefix) && !seen[e.Name()] {
				seen[e.Name()] = true
				found = append(found, pod{uuid: e.Name(), stateDir: sd, path: r.podPath(sd, e.Name())})
			}
		}
	}
	switch len(found) {
	case 0:
		return pod{}, fmt.Errorf("no pod %q (see `karman list`): %w", prefix, ErrNotFound)
	case 1:
		return found[0], nil
	}
	return pod{}, fmt.Errorf("pod UUID %q matches %d pods; give more characters: %w", prefix, len(found), ErrAmbiguous)
}

// relocate finds the pod again after a possible concurrent move.
func (r *Runtime) relocate(p pod) (pod, error) {
	for _, sd := range stateDirs {
		path := r.podPath(sd, p.uuid)
		if _, err := os.Lstat(path); err == nil {
			return pod{uuid: p.uuid, stateDir: sd, path: path}, nil
		}
	}
	return pod{}, fmt.Errorf("pod %s: %w", p.uuid, ErrNotFound)
}

// state derives a pod's state from its directory and its lock.
func (p pod) state() State {
	locked := false
	if l, err := lockfile.TryLockDir(p.path, false); err == nil {
		l.Unlock()
	} else if errors.Is(err, lockfile.ErrWouldBlock) {
		locked = true
	}
	switch p.stateDir {
	case "embryo":
		if locked {
			return Preparing
		}
		return Embryo
	case "prepared":
		return Prepared
	case "run":
		if locked {
			return Running
		}
		return Exited
	case "exited-garbage":
		if locked {
			return Deleting
		}
		return ExitedGarbage
	}
	if locked {
		return Deleting
	}
	return Garbage
}

// move renames the pod to another state directory. A pod someone else
// moved first yields ErrNotFound.
func (r *Runtime) move(p pod, to string) (pod, error) {
	np := pod{uuid: p.uuid, stateDir: to, path: r.podPath(to, p.uuid), spec: p.spec}
	if err := os.Rename(p.path, np.path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return pod{}, fmt.Errorf("pod %s moved meanwhile: %w", p.uuid, ErrNotFound)
		}
		return pod{}, fmt.Errorf("pod %s: %w", p.uuid, err)
	}
	return np, nil
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
