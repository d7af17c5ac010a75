//go:build linux

package layer

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}

// v7Tar rewrites the first header of a ustar stream as a pre-POSIX (V7)
// header: no magic, recomputed checksum.
func v7Tar(b []byte) []byte {
	b = bytes.Clone(b)
	clear(b[257:265])
	sum := 0
	for i, c := range b[:512] {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int(c)
	}
	copy(b[148:156], []byte(strings.Repeat("0", 6-len(itoaOct(sum)))+itoaOct(sum)+"\x00 "))
	return b
}

func itoaOct(n int) string {
	if n == 0 {
		return "0"
	}
	var s []byte
	for ; n > 0; n /= 8 {
		s = append([]byte{byte('0' + n%8)}, s...)
	}
	return string(s)
}

func TestDecompress(t *testing.T) {
	plain := mkTar(t, regE("hello", "hello world", 0o644), dirE("d/", 0o755))
	zstdSkippable := append([]byte{0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 'k', 'a', 'r', 'm'}, zstdBytes(t, plain)...)
	tests := []struct {
		name    string
		in      []byte
		want    []byte
		wantErr error
	}{
		{"gzip", gzipBytes(t, plain), plain, nil},
		{"multi-member gzip", append(gzipBytes(t, plain[:700]), gzipBytes(t, plain[700:])...), plain, nil},
		{"zstd", zstdBytes(t, plain), plain, nil},
		{"zstd with skippable frame", zstdSkippable, plain, nil},
		{"plain tar", plain, plain, nil},
		{"v7 tar", v7Tar(plain), v7Tar(plain), nil},
		{"empty tar", make([]byte, 1024), make([]byte, 1024), nil},
		{"garbage", bytes.Repeat([]byte("garbage!"), 100), nil, ErrUnsupported},
		{"short garbage", []byte("hi"), nil, ErrUnsupported},
		{"empty stream", nil, nil, ErrUnsupported},
		{"xz", []byte("\xfd7zXZ\x00\x00\x04rest-of-stream"), nil, ErrUnsupported},
		{"bzip2", []byte("BZh91AY&SY"), nil, ErrUnsupported},
		{"corrupt tar checksum", func() []byte { b := v7Tar(plain); b[0] ^= 1; return b }(), nil, ErrUnsupported},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := Decompress(bytes.NewReader(tc.in))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Decompress: %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			if err != nil {
				t.Fatalf("reading: %v", err)
			}
			if err := rc.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("content mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecompressThenExtract(t *testing.T) {
	data := mkTar(t, dirE("etc/", 0o755), regE("etc/os-release", "ID=karman\n", 0o644))
	for name, blob := range map[string][]byte{"gzip": gzipBytes(t, data), "zstd": zstdBytes(t, data), "tar": data} {
		t.Run(name, func(t *testing.T) {
			rc, err := Decompress(bytes.NewReader(blob))
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			s := newSandbox(t)
			if _, err := Extract(t.Context(), rc, s.dir, Options{}); err != nil {
				t.Fatal(err)
			}
			wantFile("etc/os-release", "ID=karman\n")(t, s)
		})
	}
}

func TestDecompressTruncatedGzip(t *testing.T) {
	blob := gzipBytes(t, mkTar(t, regE("f", strings.Repeat("x", 100000), 0o644)))
	rc, err := Decompress(bytes.NewReader(blob[:len(blob)/2]))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	s := newSandbox(t)
	if _, err := Extract(t.Context(), rc, s.dir, Options{}); err == nil {
		t.Error("Extract of a truncated gzip layer succeeded")
	}
}
