package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/internal/lockfile"
)

// GCResult says what gc removed.
type GCResult struct {
	Blobs  int   `json:"blobs"`
	Layers int   `json:"layers"`
	Temp   int   `json:"temp"`
	Leases int   `json:"leases"`
	Bytes  int64 `json:"bytes"`
	// Unknown lists the images gc must keep but whose manifest it cannot
	// read, and the lease files it cannot parse, one line each with the
	// fix. While there is one, gc cannot tell which blobs and layers are
	// used, so it removes none (only tmp/ and dead leases); Blobs and
	// Layers are then 0.
	Unknown []string `json:"unknown,omitempty"`
}

// GC removes every blob and extracted layer that no named image and no
// live lease needs, and everything left in tmp/ by killed processes. It
// takes the store's exclusive lock, so it waits for running fetches and
// renders; ctx bounds the wait.
//
// A broken image does not stop gc. If only its config or a layer is
// damaged, its manifest still names everything it uses, which gc keeps
// (the corrupt blob included, until a fetch replaces it). If its manifest
// is missing or corrupt, gc cannot know what it uses and keeps every blob
// and layer, saying so in Unknown, until the image is removed
// (`image rm`) or repaired (`fetch`): a running pod may use those layers.
// The same holds while the refs index is damaged (see RefsError): gc then
// cannot tell which blobs images use.
func (s *Store) GC(ctx context.Context) (GCResult, error) {
	var res GCResult
	lk, err := lockfile.TryLock(filepath.Join(s.root, "lock"), true)
	if errors.Is(err, lockfile.ErrWouldBlock) {
		s.log.Info("waiting for running fetches to finish before image gc")
		lk, err = lockfile.Acquire(ctx, filepath.Join(s.root, "lock"), true)
	}
	if err != nil {
		return res, fmt.Errorf("image gc: %w", err)
	}
	defer lk.Unlock()

	roots, err := s.roots(&res)
	if err != nil {
		return res, err
	}
	live := map[v1.Hash]bool{}
	for _, r := range roots {
		if live[r.digest] {
			continue
		}
		live[r.digest] = true
		m, err := s.Manifest(r.digest)
		if err != nil {
			res.Unknown = append(res.Unknown, unknownRoot(r, err))
			continue
		}
		live[m.Config.Digest] = true
		for _, l := range m.Layers {
			live[l.Digest] = true
		}
	}
	if len(res.Unknown) == 0 {
		if err := s.sweep(filepath.Join(s.root, "blobs", "sha256"), live, &res.Blobs, &res.Bytes); err != nil {
			return res, err
		}
		if err := s.sweep(filepath.Join(s.root, "layers", "sha256"), live, &res.Layers, &res.Bytes); err != nil {
			return res, err
		}
	}
	// Nothing else holds the store lock: whatever is in tmp/ and locks/
	// belongs to processes that died.
	if err := s.sweep(filepath.Join(s.root, "tmp"), nil, &res.Temp, &res.Bytes); err != nil {
		return res, err
	}
	var locks int
	if err := s.sweep(filepath.Join(s.root, "locks"), nil, &locks, new(int64)); err != nil {
		return res, err
	}
	return res, nil
}

// A root is a manifest gc keeps: a named image's, or a live lease's.
type root struct {
	digest v1.Hash
	lease  *Lease // nil for a named image
}

// unknownRoot says why gc cannot read root r's manifest and what to do.
func unknownRoot(r root, err error) string {
	var be *BrokenError
	if !errors.As(err, &be) || r.lease == nil {
		return err.Error()
	}
	return fmt.Sprintf("image %s, used by pod lease %s (%s), is broken: %s; gc keeps every blob and layer until that pod is removed",
		r.digest, r.lease.ID, r.lease.Owner, be.Problem())
}

// roots returns the manifests gc keeps: every named image and every lease
// whose owner still exists. Leases of vanished owners are dropped.
func (s *Store) roots(res *GCResult) ([]root, error) {
	// Names unknown (a damaged refs index, or a damaged copy moved
	// aside that may name images not fetched since): any blob may be an
	// image's. gc removes none and says how to repair.
	if err := s.RefsDamage(); errors.Is(err, ErrRefsDamaged) {
		res.Unknown = append(res.Unknown, err.Error())
	} else if err != nil {
		return nil, fmt.Errorf("image gc: %w", err)
	}
	refs, err := s.Refs()
	if errors.Is(err, ErrRefsDamaged) {
		refs = nil
	} else if err != nil {
		return nil, fmt.Errorf("image gc: %w", err)
	}
	var roots []root
	for _, d := range refs {
		roots = append(roots, root{digest: d})
	}
	leases, damaged, err := s.leases()
	if err != nil {
		return nil, fmt.Errorf("image gc: %w", err)
	}
	// A damaged lease may hold any image.
	for _, m := range damaged {
		res.Unknown = append(res.Unknown, m+"; until then gc cannot tell which image its pod uses")
	}
	for _, l := range leases {
		if l.Owner != "" {
			if _, err := os.Lstat(l.Owner); errors.Is(err, fs.ErrNotExist) {
				if err := s.RemoveLease(l.ID); err != nil {
					return nil, fmt.Errorf("image gc: %w", err)
				}
				res.Leases++
				continue
			}
		}
		d, err := ParseDigest(l.Digest)
		if err != nil {
			return nil, fmt.Errorf("image gc: lease %s: %w", l.ID, err)
		}
		roots = append(roots, root{digest: d, lease: &l})
	}
	return roots, nil
}

// sweep removes the entries of dir whose sha256 digest is not live (all
// of them when live is nil), counting them and their bytes.
func (s *Store) sweep(dir string, live map[v1.Hash]bool, count *int, bytes *int64) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("image gc: %w", err)
	}
	for _, e := range ents {
		if live != nil && live[v1.Hash{Algorithm: "sha256", Hex: e.Name()}] {
			continue
		}
		p := filepath.Join(dir, e.Name())
		*bytes += diskUsage(p)
		if err := removeAll(p); err != nil {
			return fmt.Errorf("image gc: remove %s: %w", p, err)
		}
		*count++
		s.log.Debug("image gc removed", "path", p)
	}
	return nil
}

// diskUsage sums the sizes of the regular files under p.
func diskUsage(p string) int64 {
	var n int64
	filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// removeAll removes p even when the layer made its directories read-only.
func removeAll(p string) error {
	err := os.RemoveAll(p)
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(q, 0o700)
		}
		return nil
	})
	return os.RemoveAll(p)
}
