package testimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// epoch is the modification time of every tar entry and history record, so
// that images are byte-for-byte reproducible.
var epoch = time.Date(2024, time.January, 1, 0, 0, 0, 0, time.UTC)

// mediaType returns the OCI layer media type for c.
func (c Compression) mediaType() (types.MediaType, error) {
	switch c {
	case Gzip:
		return types.OCILayer, nil
	case Zstd:
		return types.OCILayerZStd, nil
	case Uncompressed:
		return types.OCIUncompressedLayer, nil
	}
	return "", fmt.Errorf("testimage: unknown compression %d", int(c))
}

// String returns "gzip", "zstd" or "none".
func (c Compression) String() string {
	switch c {
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	case Uncompressed:
		return "none"
	}
	return fmt.Sprintf("Compression(%d)", int(c))
}

// ParseCompression parses "gzip", "zstd" or "none" (also "uncompressed").
func ParseCompression(s string) (Compression, error) {
	switch s {
	case "gzip", "gz":
		return Gzip, nil
	case "zstd", "zst":
		return Zstd, nil
	case "none", "uncompressed", "tar":
		return Uncompressed, nil
	}
	return 0, fmt.Errorf("testimage: unknown compression %q (want gzip, zstd or none)", s)
}

// memLayer is an immutable in-memory v1.Layer whose digests are computed once
// at construction. Only the compressed bytes are kept; Uncompressed
// decompresses on demand.
type memLayer struct {
	blob   []byte // as stored in a registry (compressed unless comp == Uncompressed)
	comp   Compression
	mt     types.MediaType
	digest v1.Hash // of blob
	diffID v1.Hash // of the uncompressed tar
}

var _ v1.Layer = (*memLayer)(nil)

// newLayer compresses the tar stream tarBytes with comp.
func newLayer(tarBytes []byte, comp Compression) (*memLayer, error) {
	mt, err := comp.mediaType()
	if err != nil {
		return nil, err
	}
	diffID, _, err := v1.SHA256(bytes.NewReader(tarBytes))
	if err != nil {
		return nil, err
	}
	l := &memLayer{comp: comp, mt: mt, diffID: diffID}
	switch comp {
	case Uncompressed:
		l.blob = tarBytes
		l.digest = diffID
		return l, nil
	case Gzip:
		var buf bytes.Buffer
		buf.Grow(len(tarBytes)/2 + 1024)
		zw, err := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
		if err != nil {
			return nil, err
		}
		if _, err := zw.Write(tarBytes); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
		l.blob = buf.Bytes()
	case Zstd:
		var buf bytes.Buffer
		buf.Grow(len(tarBytes)/2 + 1024)
		zw, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
		if err != nil {
			return nil, err
		}
		if _, err := zw.Write(tarBytes); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
		l.blob = buf.Bytes()
	}
	l.digest, _, err = v1.SHA256(bytes.NewReader(l.blob))
	if err != nil {
		return nil, err
	}
	return l, nil
}

func (l *memLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *memLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *memLayer) Size() (int64, error)                { return int64(len(l.blob)), nil }
func (l *memLayer) MediaType() (types.MediaType, error) { return l.mt, nil }

func (l *memLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.blob)), nil
}

func (l *memLayer) Uncompressed() (io.ReadCloser, error) {
	switch l.comp {
	case Gzip:
		return gzip.NewReader(bytes.NewReader(l.blob))
	case Zstd:
		d, err := zstd.NewReader(bytes.NewReader(l.blob), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return io.NopCloser(bytes.NewReader(l.blob)), nil
}

// tarBuilder writes a tar stream into memory with deterministic headers
// (fixed mtime, uid/gid 0 unless asked otherwise).
type tarBuilder struct {
	buf bytes.Buffer
	tw  *tar.Writer
	err error
}

func newTarBuilder(sizeHint int) *tarBuilder {
	b := &tarBuilder{}
	b.buf.Grow(sizeHint)
	b.tw = tar.NewWriter(&b.buf)
	return b
}

func (b *tarBuilder) header(h *tar.Header, data []byte) {
	if b.err != nil {
		return
	}
	h.ModTime = epoch
	if h.Uid == 0 {
		h.Uname = "root"
	}
	if h.Gid == 0 {
		h.Gname = "root"
	}
	if err := b.tw.WriteHeader(h); err != nil {
		b.err = fmt.Errorf("tar header %s: %w", h.Name, err)
		return
	}
	if len(data) > 0 {
		if _, err := b.tw.Write(data); err != nil {
			b.err = fmt.Errorf("tar data %s: %w", h.Name, err)
		}
	}
}

// dir adds a directory; name must not have a leading slash.
func (b *tarBuilder) dir(name string, mode int64) { b.ownedDir(name, mode, 0, 0, "", "") }

func (b *tarBuilder) ownedDir(name string, mode int64, uid, gid int, uname, gname string) {
	b.header(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: gid, Uname: uname, Gname: gname}, nil)
}

func (b *tarBuilder) file(name string, mode int64, data []byte) {
	b.header(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}, data)
}

func (b *tarBuilder) symlink(name, target string) {
	b.header(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}, nil)
}

func (b *tarBuilder) bytes() ([]byte, error) {
	if b.err != nil {
		return nil, b.err
	}
	if err := b.tw.Close(); err != nil {
		return nil, err
	}
	return b.buf.Bytes(), nil
}

// appendTo adds the layer built, gzip-compressed, to img, with what as
// its history entry.
func (b *tarBuilder) appendTo(img v1.Image, what string) (v1.Image, error) {
	data, err := b.bytes()
	if err != nil {
		return nil, err
	}
	l, err := newLayer(data, Gzip)
	if err != nil {
		return nil, err
	}
	return mutate.Append(img, mutate.Addendum{Layer: l, History: history(what)})
}

// link adds a hard link name -> target (both without a leading slash, the
// target earlier in the same layer). mode must be the target's: extractors
// such as containerd's apply a link header's mode to the shared inode.
func (b *tarBuilder) link(name, target string, mode int64) {
	b.header(&tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: mode}, nil)
}
