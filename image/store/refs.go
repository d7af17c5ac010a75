package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/internal/atomicfile"
	"github.com/karman-project/karman/internal/lockfile"
)

const refsVersion = 1

// refsFile is the on-disk refs index.
type refsFile struct {
	Version int               `json:"version"`
	Refs    map[string]string `json:"refs"`
}

func (s *Store) refsPath() string { return filepath.Join(s.root, "refs.json") }

// ErrRefsDamaged: the refs index cannot be parsed, or was rebuilt after
// it could not be; image names are then unknown or incomplete.
var ErrRefsDamaged = errors.New("refs index is damaged")

// RefsError says that the refs index is damaged, and how to repair it.
// Everything that does not need names keeps working: images by full
// digest, pods and their leases, gc of tmp/ (gc removes no blob and no
// layer while the names are unknown: any of them may be named there).
type RefsError struct {
	// Path is refs.json.
	Path string
	// Err is why it cannot be parsed; nil once a fetch rebuilt it.
	Err error
	// Aside is the damaged copy a fetch moved aside when it rebuilt the
	// index; set only when Err is nil.
	Aside string
}

func (e *RefsError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("refs index %s is corrupt (%v), so image names are unknown; repair it with `karman fetch IMAGE` for each image you use (the first fetch moves the damaged file aside)", e.Path, e.Err)
	}
	return fmt.Sprintf("refs index %s was rebuilt after damage and names only the images fetched since (the damaged copy is %s); fetch the images you use again, then delete %s", e.Path, e.Aside, e.Aside)
}

func (e *RefsError) Unwrap() []error { return []error{ErrRefsDamaged, e.Err} }

// RefsDamage returns the damage of the refs index, nil if there is none:
// a *RefsError for a refs.json that cannot be parsed, or for a damaged
// copy that a fetch moved aside (refs.json.damaged-*) and that the user
// has not deleted yet. Until then, gc cannot prove that a blob is unused.
func (s *Store) RefsDamage() error {
	if _, err := s.readRefs(); err != nil {
		return err
	}
	aside, _ := filepath.Glob(s.refsPath() + ".damaged-*")
	if len(aside) > 0 {
		sort.Strings(aside)
		return &RefsError{Path: s.refsPath(), Aside: aside[len(aside)-1]}
	}
	return nil
}

// updateRefs applies fn to the refs index under its lock and commits the
// result by atomic rename, so concurrent karman processes never lose an
// update and readers never see a torn file. With rebuild, a damaged index
// is moved aside and a new one started (a fetch); without, the damage is
// the error.
func (s *Store) updateRefs(ctx context.Context, rebuild bool, fn func(refs map[string]string) error) error {
	l, err := lockfile.Acquire(ctx, filepath.Join(s.root, "refs.lock"), true)
	if err != nil {
		return fmt.Errorf("refs index: %w", err)
	}
	defer l.Unlock()
	refs, err := s.readRefs()
	var re *RefsError
	if rebuild && errors.As(err, &re) {
		// Start a new index; keep the damaged one for the user, who may
		// read names from it. gc holds back while it is there.
		aside := fmt.Sprintf("%s.damaged-%s", re.Path, time.Now().UTC().Format("20060102T150405.000000000Z"))
		if err := os.Rename(re.Path, aside); err != nil {
			return fmt.Errorf("refs index: move the damaged index aside: %w", err)
		}
		s.log.Warn("refs index was corrupt: moved it aside and started a new one; fetch the images you use again, then delete the damaged copy", "damaged", aside, "error", re.Err)
		refs, err = map[string]string{}, nil
	}
	if err != nil {
		return err
	}
	if err := fn(refs); err != nil {
		return err
	}
	b, err := json.MarshalIndent(refsFile{Version: refsVersion, Refs: refs}, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(s.refsPath(), b, 0o600); err != nil {
		return fmt.Errorf("refs index: %w", err)
	}
	return nil
}

func (s *Store) readRefs() (map[string]string, error) {
	b, err := os.ReadFile(s.refsPath())
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("refs index: %w", err)
	}
	var f refsFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, &RefsError{Path: s.refsPath(), Err: err}
	}
	if f.Version != refsVersion {
		return nil, fmt.Errorf("refs index %s has version %d, this karman reads version %d; use a matching karman", s.refsPath(), f.Version, refsVersion)
	}
	if f.Refs == nil {
		f.Refs = map[string]string{}
	}
	for n, ds := range f.Refs {
		if _, err := ParseDigest(ds); err != nil {
			return nil, &RefsError{Path: s.refsPath(), Err: fmt.Errorf("entry %q: %w", n, err)}
		}
	}
	return f.Refs, nil
}

// SetRef points name at manifest digest d. If the refs index is damaged
// it starts a new one (see RefsError).
func (s *Store) SetRef(ctx context.Context, name string, d v1.Hash) error {
	return s.updateRefs(ctx, true, func(refs map[string]string) error {
		refs[name] = d.String()
		return nil
	})
}

// RemoveRefs removes every name for which match returns true and returns
// the names removed, sorted.
func (s *Store) RemoveRefs(ctx context.Context, match func(name string, d v1.Hash) bool) ([]string, error) {
	var removed []string
	err := s.updateRefs(ctx, false, func(refs map[string]string) error {
		for n, ds := range refs {
			d, err := v1.NewHash(ds)
			if err == nil && match(n, d) {
				delete(refs, n)
				removed = append(removed, n)
			}
		}
		return nil
	})
	sort.Strings(removed)
	return removed, err
}

// Refs returns a snapshot of the refs index.
func (s *Store) Refs() (map[string]v1.Hash, error) {
	raw, err := s.readRefs()
	if err != nil {
		return nil, err
	}
	refs := make(map[string]v1.Hash, len(raw))
	for n, ds := range raw {
		d, err := ParseDigest(ds)
		if err != nil { // checked by readRefs
			return nil, fmt.Errorf("refs index entry %q: %w", n, err)
		}
		refs[n] = d
	}
	return refs, nil
}
