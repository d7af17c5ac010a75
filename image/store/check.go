package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/internal/lockfile"
)

// CheckResult is what Check found and did.
type CheckResult struct {
	// Blobs and Bytes count what was hashed.
	Blobs int   `json:"blobs"`
	Bytes int64 `json:"bytes"`
	// Bad are the blobs whose content does not match their name.
	Bad []BadBlob `json:"bad"`
	// Broken are the named images that cannot be used once the check is
	// done (a blob or an extracted layer missing or corrupt), each with
	// its fix; after a Remove, those whose bad blobs it removed.
	Broken []image.Image `json:"broken"`
	// Refs is the damage of the refs index, with its fix (see
	// RefsError); while there is one, Uses and Broken know no names.
	Refs string `json:"refs,omitempty"`
}

// Kept reports whether a bad blob is still in the store.
func (r CheckResult) Kept() int {
	n := 0
	for _, b := range r.Bad {
		if !b.Removed {
			n++
		}
	}
	return n
}

// BadBlob is a committed blob that failed the check.
type BadBlob struct {
	Digest string `json:"digest"`
	// Problem: "its N bytes have digest sha256:...", "not a regular
	// file", "name is not a sha256 digest".
	Problem string `json:"problem"`
	// Uses says what needs the blob: "layer of NAME", "config of NAME",
	// "manifest of NAME", "layer of pod lease ID"; none if nothing does.
	Uses []string `json:"uses"`
	// Removed: the blob was deleted (CheckOptions.Remove).
	Removed bool `json:"removed"`
	// Layer says what became of the layer extracted from a bad layer
	// blob: "removed" (it came from the same damaged data and cannot be
	// verified on its own), "kept: ..." with the reason, or "" when there
	// is none.
	Layer string `json:"layer,omitempty"`
	// Kept says why a bad blob was not removed.
	Kept string `json:"kept,omitempty"`
}

// CheckOptions configure Check.
type CheckOptions struct {
	// Remove deletes the bad blobs and the layers extracted from them, so
	// that fetching the images again downloads them anew. A layer that a
	// running pod uses (a live lease) is kept, with its blob, and
	// reported.
	Remove bool
}

// Check hashes every committed blob again and compares it with its name,
// which is the only way to find a damaged layer blob: nothing else reads
// a layer blob once it is extracted. It also reports the named images
// that cannot be used. Check holds the store's shared lock, or the
// exclusive one (as gc does) with Remove; ctx bounds the wait and is
// checked between blobs.
func (s *Store) Check(ctx context.Context, o CheckOptions) (CheckResult, error) {
	var res CheckResult
	lock := filepath.Join(s.root, "lock")
	lk, err := lockfile.TryLock(lock, o.Remove)
	if errors.Is(err, lockfile.ErrWouldBlock) {
		s.log.Info("waiting for running fetches and gc to finish before image check")
		lk, err = lockfile.Acquire(ctx, lock, o.Remove)
	}
	if err != nil {
		return res, fmt.Errorf("image check: %w", err)
	}
	defer lk.Unlock()

	uses, pinned, pinAll, err := s.uses()
	if err != nil {
		return res, fmt.Errorf("image check: %w", err)
	}
	dir := filepath.Join(s.root, "blobs", "sha256")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return res, fmt.Errorf("image check: %w", err)
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("image check: %w", err)
		}
		problem, n, err := s.checkBlob(dir, e)
		if err != nil {
			return res, fmt.Errorf("image check: %w", err)
		}
		res.Blobs++
		res.Bytes += n
		if problem == "" {
			continue
		}
		d := v1.Hash{Algorithm: "sha256", Hex: e.Name()}
		b := BadBlob{Digest: d.String(), Problem: problem, Uses: uses[d]}
		if b.Uses == nil {
			b.Uses = []string{}
		}
		if o.Remove {
			s.removeBad(&b, d, pinned[d] || pinAll)
		}
		s.log.Debug("image check: bad blob", "digest", b.Digest, "problem", problem, "removed", b.Removed)
		res.Bad = append(res.Bad, b)
	}
	if res.Bad == nil {
		res.Bad = []BadBlob{}
	}
	res.Broken = []image.Image{}
	if err := s.RefsDamage(); err != nil {
		if !errors.Is(err, ErrRefsDamaged) {
			return res, fmt.Errorf("image check: %w", err)
		}
		res.Refs = err.Error()
	}
	imgs, err := s.Images()
	if errors.Is(err, ErrRefsDamaged) {
		imgs = nil
	} else if err != nil {
		return res, fmt.Errorf("image check: %w", err)
	}
	for _, img := range imgs {
		if img.Status == image.StatusBroken {
			res.Broken = append(res.Broken, img)
		}
	}
	return res, nil
}

// checkBlob hashes the blob entry e of dir and says what is wrong with
// it ("" if nothing) and how many bytes it read.
func (s *Store) checkBlob(dir string, e fs.DirEntry) (problem string, n int64, err error) {
	if !IsSHA256Hex(e.Name()) {
		return "name is not a sha256 digest", 0, nil
	}
	if !e.Type().IsRegular() {
		return "not a regular file", 0, nil
	}
	f, err := os.Open(filepath.Join(dir, e.Name()))
	if errors.Is(err, fs.ErrNotExist) {
		return "", 0, nil // removed under us by a fetch replacing it
	}
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err = io.Copy(h, f)
	if err != nil {
		return "", n, fmt.Errorf("blob %s: %w", e.Name(), err)
	}
	if got := fmt.Sprintf("%x", h.Sum(nil)); got != e.Name() {
		return fmt.Sprintf("its %d bytes have digest sha256:%s", n, got), n, nil
	}
	return "", n, nil
}

// removeBad removes bad blob d and the layer extracted from it, unless
// pinned (a running pod may use the layer): both are then kept, so that
// an extracted layer always has its blob.
func (s *Store) removeBad(b *BadBlob, d v1.Hash, pinned bool) {
	hasLayer := IsSHA256Hex(d.Hex) && s.HasLayer(d)
	if hasLayer && pinned {
		b.Kept = "a running pod may use the layer extracted from it; remove the pod, then run `karman image check --remove` again"
		b.Layer = "kept: a running pod may use it"
		return
	}
	if hasLayer {
		if err := removeAll(s.LayerPath(d)); err != nil {
			b.Kept = fmt.Sprintf("removing its extracted layer failed: %v", err)
			b.Layer = "kept: " + err.Error()
			return
		}
		b.Layer = "removed"
	}
	if err := removeAll(filepath.Join(s.root, "blobs", "sha256", d.Hex)); err != nil {
		b.Kept = fmt.Sprintf("removing it failed: %v", err)
		return
	}
	b.Removed = true
}

// uses maps each blob to what uses it, for every named image and live
// lease whose manifest can be read. pinned are the layers of live
// leases; pinAll is set when a live lease's manifest cannot be read, so
// that any layer may be in use.
func (s *Store) uses() (uses map[v1.Hash][]string, pinned map[v1.Hash]bool, pinAll bool, err error) {
	uses, pinned = map[v1.Hash][]string{}, map[v1.Hash]bool{}
	refs, err := s.Refs()
	if errors.Is(err, ErrRefsDamaged) {
		refs = nil // names unknown: only leases are users (see CheckResult.Refs)
	} else if err != nil {
		return nil, nil, false, err
	}
	leases, damaged, err := s.leases()
	if err != nil {
		return nil, nil, false, err
	}
	pinAll = len(damaged) > 0 // a damaged lease may hold any layer
	type user struct {
		d     v1.Hash
		label string
		lease bool
	}
	var users []user
	for n, d := range refs {
		users = append(users, user{d, n, false})
	}
	for _, l := range leases {
		if _, err := os.Lstat(l.Owner); l.Owner != "" && errors.Is(err, fs.ErrNotExist) {
			continue // gc drops it
		}
		d, err := ParseDigest(l.Digest)
		if err != nil {
			pinAll = true
			continue
		}
		users = append(users, user{d, "pod lease " + l.ID, true})
	}
	sort.Slice(users, func(i, j int) bool { return users[i].label < users[j].label })
	for _, u := range users {
		uses[u.d] = append(uses[u.d], "manifest of "+u.label)
		m, err := s.Manifest(u.d)
		if err != nil {
			pinAll = pinAll || u.lease
			continue
		}
		uses[m.Config.Digest] = append(uses[m.Config.Digest], "config of "+u.label)
		for _, l := range m.Layers {
			uses[l.Digest] = append(uses[l.Digest], "layer of "+u.label)
			if u.lease {
				pinned[l.Digest] = true
			}
		}
	}
	return uses, pinned, pinAll, nil
}
