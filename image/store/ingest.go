package store

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/image"
	"github.com/karman-project/karman/internal/atomicfile"
	"github.com/karman-project/karman/internal/lockfile"
)

// Opener opens the compressed bytes of a layer blob.
type Opener func(ctx context.Context) (io.ReadCloser, error)

// Unpacker decompresses a layer blob and extracts its tar stream into a
// directory, treating it as hostile (package image/layer: layer.Unpacker).
// The store leaves it to the caller so as not to link the decompressors:
// reading the store, which every `karman run` does, needs none.
type Unpacker interface {
	Decompress(r io.Reader) (io.ReadCloser, error)
	Extract(ctx context.Context, r io.Reader, dir string) error
}

// IngestLayer makes the layer blob desc committed and extracted (by u),
// reading it from open unless the store has it already. The blob streams through the
// digest and into the extractor at once; the digest and size (and diffID,
// when not zero) decide whether the result is committed. progress, when not
// nil, is called with the number of compressed bytes read.
//
// Concurrent calls for the same layer, in this process or another, are
// serialised by a per-layer lock: the layer is downloaded and extracted once.
func (s *Store) IngestLayer(ctx context.Context, desc v1.Descriptor, diffID v1.Hash, open Opener, progress func(n int), u Unpacker) (fetched bool, err error) {
	if s.HasLayer(desc.Digest) && s.HasBlob(desc.Digest) {
		return false, nil
	}
	lk, err := lockfile.Acquire(ctx, filepath.Join(s.root, "locks", desc.Digest.Hex+".lock"), true)
	if err != nil {
		return false, fmt.Errorf("layer %s: %w", desc.Digest, err)
	}
	defer lk.Unlock()
	if s.HasLayer(desc.Digest) && s.HasBlob(desc.Digest) {
		return false, nil // another process finished it while we waited
	}
	if !s.HasBlob(desc.Digest) {
		return s.ingest(ctx, desc, diffID, open, progress, u, false)
	}
	fetched, err = s.ingest(ctx, desc, diffID, open, progress, u, true)
	var ce *CorruptError
	if !errors.As(err, &ce) {
		return fetched, err
	}
	// The committed blob is damaged: replace it from the source.
	s.log.Info("replacing a damaged layer blob", "digest", desc.Digest.String(), "error", err)
	if err := os.Remove(s.BlobPath(desc.Digest)); err != nil {
		return false, fmt.Errorf("layer %s: %w", desc.Digest, err)
	}
	return s.ingest(ctx, desc, diffID, open, progress, u, false)
}

// ingest extracts layer desc from the committed blob (haveBlob) or from
// open, committing the blob too. The caller holds the layer's lock.
func (s *Store) ingest(ctx context.Context, desc v1.Descriptor, diffID v1.Hash, open Opener, progress func(n int), u Unpacker, haveBlob bool) (fetched bool, err error) {
	if haveBlob {
		open = func(context.Context) (io.ReadCloser, error) { return os.Open(s.BlobPath(desc.Digest)) }
	}
	rc, err := open(ctx)
	if err != nil {
		return false, err
	}
	defer rc.Close()

	dir, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "layer-")
	if err != nil {
		return false, fmt.Errorf("layer %s: %w", desc.Digest, err)
	}
	var blob *os.File
	defer func() {
		if blob != nil {
			blob.Close()
			os.Remove(blob.Name())
		}
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if err := os.Chmod(dir, 0o755); err != nil {
		return false, err
	}

	digester := sha256.New()
	sink := &stickyWriter{w: digester}
	if !haveBlob {
		if blob, err = os.CreateTemp(filepath.Join(s.root, "tmp"), "blob-"); err != nil {
			return false, fmt.Errorf("layer %s: %w", desc.Digest, err)
		}
		sink.w = io.MultiWriter(blob, digester)
	}
	raw := &countingReader{r: io.LimitReader(rc, desc.Size+1), progress: progress}
	tee := io.TeeReader(raw, sink)

	xerr := extract(ctx, tee, dir, diffID, u)
	// The extractor may stop before the end of the blob (tar padding,
	// trailing bytes, or an error): the digest covers every byte, so read
	// them all. A blob that is not what the manifest names is reported as
	// such rather than as whatever the extractor tripped over. A failed
	// write of the blob (a full disk) is reported as itself, even when the
	// extractor saw it first: the digest then misses what was not written.
	if _, err := io.Copy(io.Discard, tee); err != nil || sink.err != nil {
		return false, fmt.Errorf("layer %s: %w", desc.Digest, cmp.Or(sink.err, err))
	}
	if xerr != nil && raw.n == desc.Size && hashOf(digester) == desc.Digest || ctx.Err() != nil {
		return false, fmt.Errorf("layer %s: %w", desc.Digest, errors.Join(xerr, ctx.Err()))
	}
	if haveBlob && (raw.n != desc.Size || hashOf(digester) != desc.Digest) {
		return false, &CorruptError{Digest: desc.Digest, Got: hashOf(digester), Size: raw.n}
	}
	if raw.n != desc.Size {
		return false, fmt.Errorf("layer %s: blob has %s bytes, the manifest says %d (truncated or padded download): %w",
			desc.Digest, sizeString(raw.n, desc.Size), desc.Size, image.ErrDigestMismatch)
	}
	if got := hashOf(digester); got != desc.Digest {
		return false, fmt.Errorf("layer %s: downloaded content has digest %s; the registry or the image is corrupt: %w", desc.Digest, got, image.ErrDigestMismatch)
	}
	if blob != nil {
		// Durable before refs.json can name it (the extracted layer is
		// not fsynced: it can be extracted again from the blob).
		err := blob.Sync()
		if cerr := blob.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return false, fmt.Errorf("layer %s: %w", desc.Digest, err)
		}
		if err := os.Rename(blob.Name(), s.BlobPath(desc.Digest)); err != nil {
			return false, fmt.Errorf("layer %s: %w", desc.Digest, err)
		}
		blob = nil
		if err := atomicfile.SyncDir(filepath.Dir(s.BlobPath(desc.Digest))); err != nil {
			return false, fmt.Errorf("layer %s: %w", desc.Digest, err)
		}
	}
	if err := os.Rename(dir, s.LayerPath(desc.Digest)); err != nil {
		if !s.HasLayer(desc.Digest) {
			return false, fmt.Errorf("layer %s: commit extracted layer: %w", desc.Digest, err)
		}
		// Only the blob was missing: keep the extracted layer, which a
		// running pod may use, and drop the new copy.
		if err := removeAll(dir); err != nil {
			return false, fmt.Errorf("layer %s: %w", desc.Digest, err)
		}
	}
	return !haveBlob, nil
}

// stickyWriter is a writer whose first error is kept and returned by
// every later write.
type stickyWriter struct {
	w   io.Writer
	err error
}

func (w *stickyWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.w.Write(p)
	w.err = err
	return n, err
}

// extract decompresses r into dir, checking the uncompressed digest
// against diffID unless it is zero.
func extract(ctx context.Context, r io.Reader, dir string, diffID v1.Hash, u Unpacker) error {
	dr, err := u.Decompress(r)
	if err != nil {
		return err
	}
	defer dr.Close()
	var h hash.Hash
	tr := io.Reader(dr)
	if diffID != (v1.Hash{}) {
		h = sha256.New()
		tr = io.TeeReader(dr, h)
	}
	if err := u.Extract(ctx, tr, dir); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, tr); err != nil {
		return fmt.Errorf("decompress: %w", err)
	}
	if h != nil {
		if got := fmt.Sprintf("%x", h.Sum(nil)); got != diffID.Hex {
			return fmt.Errorf("uncompressed content has digest sha256:%s, the image config says %s: %w", got, diffID, image.ErrDigestMismatch)
		}
	}
	return nil
}

func hashOf(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))}
}

func sizeString(n, want int64) string {
	if n > want {
		return "more than that"
	}
	return fmt.Sprint(n)
}

type countingReader struct {
	r        io.Reader
	n        int64
	progress func(int)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.progress != nil && n > 0 {
		c.progress(n)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("download interrupted after %d bytes: %w", c.n, err)
	}
	return n, err
}
