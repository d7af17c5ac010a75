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

// updateRefs applies fn to the refs index under its lock and commits the
// result by atomic rename, so concurrent karman processes never lose an
// update and readers never see a torn file.
func (s *Store) updateRefs(ctx context.Context, fn func(refs map[string]string) error) error {
	l, err := lockfile.Acquire(ctx, filepath.Join(s.root, "refs.lock"), true)
	if err != nil {
		return fmt.Errorf("refs index: %w", err)
	}
	defer l.Unlock()
	refs, err := s.readRefs()
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
		return nil, fmt.Errorf("refs index %s is corrupt (%v); move it aside and fetch the images again", s.refsPath(), err)
	}
	if f.Version != refsVersion {
		return nil, fmt.Errorf("refs index %s has version %d, this karman reads version %d; use a matching karman", s.refsPath(), f.Version, refsVersion)
	}
	if f.Refs == nil {
		f.Refs = map[string]string{}
	}
	return f.Refs, nil
}

// SetRef points name at manifest digest d.
func (s *Store) SetRef(ctx context.Context, name string, d v1.Hash) error {
	return s.updateRefs(ctx, func(refs map[string]string) error {
		refs[name] = d.String()
		return nil
	})
}

// RemoveRefs removes every name for which match returns true and returns
// the names removed, sorted.
func (s *Store) RemoveRefs(ctx context.Context, match func(name string, d v1.Hash) bool) ([]string, error) {
	var removed []string
	err := s.updateRefs(ctx, func(refs map[string]string) error {
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
		if err != nil {
			return nil, fmt.Errorf("refs index entry %q: %w", n, err)
		}
		refs[n] = d
	}
	return refs, nil
}
