package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/internal/atomicfile"
	"github.com/karman-project/karman/internal/lockfile"
)

// Store is an image store rooted at a directory. It is safe for concurrent
// use by goroutines and by several karman processes.
type Store struct {
	root string
	log  *slog.Logger
}

// Open opens (creating as needed) the store rooted at root. A nil logger
// discards records.
func Open(root string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{"blobs/sha256", "layers/sha256", "leases", "tmp", "locks"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return nil, fmt.Errorf("open image store: %w", err)
		}
	}
	return &Store{root: root, log: log}, nil
}

// Root returns the store's directory.
func (s *Store) Root() string { return s.root }

// Use takes the store's shared lock: gc waits until it is released. Every
// operation that adds content or depends on layers staying put holds it.
func (s *Store) Use(ctx context.Context) (*lockfile.Lock, error) {
	l, err := lockfile.Acquire(ctx, filepath.Join(s.root, "lock"), false)
	if err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	return l, nil
}

// BlobPath is where the blob with digest d lives once committed.
func (s *Store) BlobPath(d v1.Hash) string {
	return filepath.Join(s.root, "blobs", d.Algorithm, d.Hex)
}

// LayerPath is where the layer blob d is extracted once committed.
func (s *Store) LayerPath(d v1.Hash) string {
	return filepath.Join(s.root, "layers", d.Algorithm, d.Hex)
}

// HasBlob reports whether blob d is committed.
func (s *Store) HasBlob(d v1.Hash) bool {
	_, err := os.Lstat(s.BlobPath(d))
	return err == nil
}

// HasLayer reports whether layer blob d is extracted.
func (s *Store) HasLayer(d v1.Hash) bool {
	_, err := os.Lstat(s.LayerPath(d))
	return err == nil
}

// ReadBlob reads a committed blob of at most limit bytes and checks it
// against its digest again: small blobs (manifests, configs) are cheap to
// re-verify and are parsed by security-relevant code.
func (s *Store) ReadBlob(d v1.Hash, limit int64) ([]byte, error) {
	if d.Algorithm != "sha256" {
		return nil, fmt.Errorf("blob %s: algorithm %q: %w", d, d.Algorithm, image.ErrUnsupported)
	}
	f, err := os.Open(s.BlobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", d, image.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", d, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("blob %s is larger than %d bytes: %w", d, limit, image.ErrUnsupported)
	}
	if got, _, _ := v1.SHA256(bytes.NewReader(b)); got != d {
		return nil, &CorruptError{Digest: d, Got: got, Size: int64(len(b))}
	}
	return b, nil
}

// CorruptError is a committed blob whose content no longer matches its
// digest (a disk fault, or a hand edit). It is an image.ErrDigestMismatch.
type CorruptError struct {
	Digest, Got v1.Hash
	Size        int64
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("stored blob %s is corrupt: its %d bytes have digest %s", e.Digest, e.Size, e.Got)
}

func (e *CorruptError) Is(target error) bool { return target == image.ErrDigestMismatch }

// PutBlob verifies data against d and size and commits it. A committed
// blob of that digest is kept if it is intact and replaced if it is
// corrupt: fetching an image again repairs its manifest and config.
func (s *Store) PutBlob(d v1.Hash, size int64, data []byte) error {
	if err := verifyBytes(d, size, data); err != nil {
		return err
	}
	if s.HasBlob(d) {
		_, err := s.ReadBlob(d, size)
		if err == nil {
			return nil
		}
		s.log.Info("replacing a damaged blob", "digest", d.String(), "error", err)
	}
	f, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "blob-")
	if err != nil {
		return fmt.Errorf("store blob %s: %w", d, err)
	}
	_, err = io.Copy(f, bytes.NewReader(data))
	if err == nil {
		err = f.Sync() // durable before refs.json can name it
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), s.BlobPath(d))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("store blob %s: %w", d, err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(s.BlobPath(d))); err != nil {
		return fmt.Errorf("store blob %s: %w", d, err)
	}
	return nil
}

func verifyBytes(d v1.Hash, size int64, data []byte) error {
	if int64(len(data)) != size {
		return fmt.Errorf("blob %s: got %d bytes, want %d: %w", d, len(data), size, image.ErrDigestMismatch)
	}
	got, _, err := v1.SHA256(bytes.NewReader(data))
	if err != nil {
		return err
	}
	if got != d {
		return fmt.Errorf("blob %s: content has digest %s: %w", d, got, image.ErrDigestMismatch)
	}
	return nil
}

// ParseDigest parses "sha256:HEX", refusing other algorithms and bad hex:
// digests come from hostile manifests and become file names.
func ParseDigest(s string) (v1.Hash, error) {
	h, err := v1.NewHash(s)
	if err != nil || h.Algorithm != "sha256" || !IsSHA256Hex(h.Hex) {
		return v1.Hash{}, fmt.Errorf("digest %q is not sha256:<64 hex digits>: %w", s, image.ErrUnsupported)
	}
	return h, nil
}

// IsSHA256Hex tells the hex part of a sha256 digest: 64 lower-case hex
// digits.
func IsSHA256Hex(s string) bool {
	return len(s) == 64 && strings.Trim(s, "0123456789abcdef") == ""
}
