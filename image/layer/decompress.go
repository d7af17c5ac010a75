package layer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

const (
	tarBlockSize = 512
	sniffBufSize = 64 << 10
)

var (
	magicGzip  = []byte{0x1f, 0x8b}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicXz    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicBzip2 = []byte("BZh")
)

// Decompress sniffs the stream's first bytes and returns the uncompressed tar
// stream: gzip and zstd are decoded, a plain tar stream is passed through.
// Anything else (including an empty stream) is an error wrapping
// ErrUnsupported. Close releases decoder resources; it does not close r.
func Decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, sniffBufSize)
	head, err := br.Peek(tarBlockSize)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading layer header: %w", err)
	}
	switch {
	case bytes.HasPrefix(head, magicGzip):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("opening gzip layer: %w", err)
		}
		return zr, nil
	case bytes.HasPrefix(head, magicZstd) || isZstdSkippable(head):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("opening zstd layer: %w", err)
		}
		return zstdReadCloser{zr}, nil
	case isTarHeader(head):
		return io.NopCloser(br), nil
	case len(head) == 0:
		return nil, fmt.Errorf("empty layer stream: %w", ErrUnsupported)
	case bytes.HasPrefix(head, magicXz):
		return nil, fmt.Errorf("xz-compressed layer: %w", ErrUnsupported)
	case bytes.HasPrefix(head, magicBzip2):
		return nil, fmt.Errorf("bzip2-compressed layer: %w", ErrUnsupported)
	default:
		n := min(len(head), 8)
		return nil, fmt.Errorf("layer stream starts with unknown magic % x (not gzip, zstd or tar): %w",
			head[:n], ErrUnsupported)
	}
}

// zstdReadCloser adapts *zstd.Decoder, whose Close returns nothing.
type zstdReadCloser struct{ *zstd.Decoder }

func (z zstdReadCloser) Close() error {
	z.Decoder.Close()
	return nil
}

// isZstdSkippable reports a zstd skippable frame (magic 0x184D2A50..5F).
func isZstdSkippable(b []byte) bool {
	return len(b) >= 4 && b[0]&0xf0 == 0x50 && b[1] == 0x2a && b[2] == 0x4d && b[3] == 0x18
}

// isTarHeader reports whether b starts with a tar header block: a ustar/GNU
// magic, a valid V7 checksum, or an all-zero block (an empty archive).
func isTarHeader(b []byte) bool {
	if len(b) < tarBlockSize {
		return false
	}
	blk := b[:tarBlockSize]
	if string(blk[257:262]) == "ustar" {
		return true
	}
	if bytes.Count(blk, []byte{0}) == tarBlockSize {
		return true
	}
	return tarChecksumOK(blk)
}

// tarChecksumOK validates the header checksum (field at 148..156, octal), which
// is the sum of the header bytes with the checksum field counted as spaces.
// Historic implementations summed signed bytes, so both sums are accepted.
func tarChecksumOK(blk []byte) bool {
	field := bytes.Trim(blk[148:156], " \x00")
	if len(field) == 0 {
		return false
	}
	var want int64
	for _, c := range field {
		if c < '0' || c > '7' {
			return false
		}
		want = want*8 + int64(c-'0')
	}
	var unsigned, signed int64
	for i, c := range blk {
		if i >= 148 && i < 156 {
			c = ' '
		}
		unsigned += int64(c)
		signed += int64(int8(c))
	}
	return want == unsigned || want == signed
}
