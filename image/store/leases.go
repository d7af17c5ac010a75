package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/internal/atomicfile"
)

// A Lease keeps an image's blobs and layers alive while its owner exists,
// whatever happens to the image's names: `image rm` never breaks a pod.
// Owner is a path (a pod directory); gc drops a lease whose owner is gone,
// so a pod removed by a crash cannot pin an image forever.
type Lease struct {
	ID     string `json:"id"`
	Digest string `json:"digest"`
	Owner  string `json:"owner"`
}

// validLeaseID accepts 1 to 128 of [A-Za-z0-9_.-], not starting with
// '_', '.' or '-'. (No regexp: its compilation would run in every karman
// process, the pod init included.)
func validLeaseID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i, c := range id {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}

func (s *Store) leasePath(id string) string {
	return filepath.Join(s.root, "leases", id+".json")
}

// AddLease records that owner uses manifest d. Call it before the owner
// starts to depend on the layers, while holding the store's shared lock.
func (s *Store) AddLease(id string, d v1.Hash, owner string) error {
	if !validLeaseID(id) {
		return fmt.Errorf("lease id %q: use letters, digits, '.', '_' and '-'", id)
	}
	b, err := json.Marshal(Lease{ID: id, Digest: d.String(), Owner: owner})
	if err != nil {
		return err
	}
	// Not fsynced: a pod that is run at once does not outlive a reboot;
	// SyncLeases makes those of a prepared pod durable.
	if err := atomicfile.WriteFileNoSync(s.leasePath(id), b, 0o600); err != nil {
		return fmt.Errorf("lease %s: %w", id, err)
	}
	return nil
}

// SyncLeases makes the leases ids durable (fsync), for an owner that must
// outlive a reboot.
func (s *Store) SyncLeases(ids ...string) error {
	paths := make([]string, len(ids))
	for i, id := range ids {
		paths[i] = s.leasePath(id)
	}
	if err := atomicfile.Sync(paths...); err != nil {
		return fmt.Errorf("leases: %w", err)
	}
	return nil
}

// RemoveLease drops a lease; removing a missing lease is not an error.
func (s *Store) RemoveLease(id string) error {
	if err := os.Remove(s.leasePath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("lease %s: %w", id, err)
	}
	return nil
}

// Leases lists the recorded leases; a lease file that cannot be parsed
// is an error.
func (s *Store) Leases() ([]Lease, error) {
	out, damaged, err := s.leases()
	if err == nil && len(damaged) > 0 {
		err = errors.New(damaged[0])
	}
	return out, err
}

// leases lists the recorded leases and describes the lease files that
// cannot be parsed (a torn write, a hand edit).
func (s *Store) leases() (out []Lease, damaged []string, err error) {
	ents, err := os.ReadDir(filepath.Join(s.root, "leases"))
	if err != nil {
		return nil, nil, fmt.Errorf("leases: %w", err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		p := filepath.Join(s.root, "leases", e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			continue // removed under us
		}
		var l Lease
		if err := json.Unmarshal(b, &l); err != nil {
			damaged = append(damaged, fmt.Sprintf("lease %s is corrupt (%v); if no pod uses it any more (see `karman list`), delete it", p, err))
			continue
		}
		out = append(out, l)
	}
	return out, damaged, nil
}
