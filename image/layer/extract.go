//go:build linux

package layer

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

const copyBufferSize = 1 << 20

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// extractor holds the state of one Extract call.
type extractor struct {
	rootfd int // O_PATH descriptor of the layer directory
	isRoot bool
	log    *slog.Logger
	stats  Stats

	// One-entry cache of the parent directory of consecutive entries.
	cacheKey   string
	cacheFd    int
	cacheStale bool

	buf     []byte
	w       fileWriter
	pathBuf []byte
	dirs    []dirTimes // directory times, applied at the very end
}

// fileWriter hides (*os.File).ReadFrom so that io.CopyBuffer really uses the
// extractor's 1 MiB buffer instead of falling back to a 32 KiB io.Copy.
type fileWriter struct{ f *os.File }

func (w *fileWriter) Write(p []byte) (int, error) { return w.f.Write(p) }

// Extract reads an uncompressed tar stream from r and recreates it inside dir,
// which must exist (normally empty, created by the caller). It never creates
// or changes anything outside dir. See the package documentation for the
// whiteout format and the security model. The returned Stats describe what was
// written, also on error.
func Extract(ctx context.Context, r io.Reader, dir string, opts Options) (Stats, error) {
	rootfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Stats{}, fmt.Errorf("opening layer directory: %w", &os.PathError{Op: "open", Path: dir, Err: err})
	}
	bp := copyBuffers.Get().(*[]byte)
	e := &extractor{
		rootfd:  rootfd,
		isRoot:  os.Geteuid() == 0,
		log:     opts.Logger,
		cacheFd: -1,
		buf:     *bp,
	}
	defer func() {
		e.setCache("", -1)
		unix.Close(rootfd)
		copyBuffers.Put(bp)
	}()

	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return e.stats, fmt.Errorf("extracting layer: %w", err)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return e.stats, fmt.Errorf("reading layer tar: %w", err)
		}
		err = e.entry(hdr, tr)
		e.endEntry()
		if err != nil {
			return e.stats, err
		}
	}
	if err := e.finishDirs(); err != nil {
		return e.stats, err
	}
	return e.stats, nil
}

// entryError formats the error for one tar entry: what was refused and why.
func entryError(name, what string, err error) error {
	return fmt.Errorf("layer entry %q: %s: %w", name, what, err)
}

func (e *extractor) debug(msg string, args ...any) {
	if e.log != nil {
		e.log.Debug(msg, args...)
	}
}

// entry extracts one tar entry; r yields its content.
func (e *extractor) entry(hdr *tar.Header, r io.Reader) error {
	name := hdr.Name
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		e.debug("layer: ignoring PAX global header", "entry", name)
		return nil
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeDir, tar.TypeSymlink, tar.TypeLink,
		tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return entryError(name, "entry type "+typeName(hdr.Typeflag)+" is not supported", ErrUnsupported)
	}

	rel, ok := cleanName(name)
	if !ok {
		return entryError(name, "path escapes the layer directory", ErrUnsafePath)
	}
	if rel == "" {
		return e.rootEntry(hdr)
	}
	dirRel, base := splitRel(rel)
	if strings.Contains(rel, whiteoutPrefix) {
		kind, why, err := classifyWhiteout(dirRel, base)
		if err != nil {
			return entryError(name, why, err)
		}
		switch kind {
		case aufsMeta:
			e.debug("layer: skipping AUFS metadata entry", "entry", name)
			return nil
		case whiteout:
			return e.whiteout(hdr, dirRel, base[len(whiteoutPrefix):])
		case opaque:
			return e.opaque(hdr, dirRel)
		}
	}

	pfd, err := e.parent(dirRel)
	if err != nil {
		return entryError(name, fmt.Sprintf("resolving parent directory %q", dirRel), err)
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		err = e.dir(hdr, rel, pfd, base)
	case tar.TypeSymlink:
		err = e.symlink(hdr, pfd, base)
	case tar.TypeLink:
		return e.hardlink(hdr, dirRel, pfd, base)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		err = e.device(hdr, pfd, base)
	default:
		err = e.file(hdr, r, pfd, base)
	}
	if err != nil {
		return entryError(name, "extracting "+typeName(hdr.Typeflag), err)
	}
	return nil
}

// rootEntry applies the metadata of a "/", "./" or "." directory entry to the
// layer directory itself.
func (e *extractor) rootEntry(hdr *tar.Header) error {
	if hdr.Typeflag != tar.TypeDir {
		return entryError(hdr.Name, typeName(hdr.Typeflag)+" would replace the layer root", ErrUnsafePath)
	}
	fd, err := unix.Openat(e.rootfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == nil {
		err = e.fdMeta(fd, hdr)
		unix.Close(fd)
	}
	if err != nil {
		return entryError(hdr.Name, "setting layer root metadata", err)
	}
	e.recordDir("", hdr)
	e.stats.Dirs++
	return nil
}

// file writes a regular file, replacing (never following) any existing entry.
func (e *extractor) file(hdr *tar.Header, r io.Reader, pfd int, base string) error {
	var fd int
	err := e.create(pfd, base, func() (err error) {
		fd, err = unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return fmt.Errorf("creating file: %w", err)
	}
	f := os.NewFile(uintptr(fd), base)
	if hdr.Size > 0 {
		e.w.f = f
		n, err := io.CopyBuffer(&e.w, r, e.buf)
		e.w.f = nil
		e.stats.Bytes += n
		if err != nil {
			f.Close()
			return fmt.Errorf("writing content: %w", err)
		}
	}
	// Content first: writing drops security.capability, chown drops setuid.
	err = e.fdMeta(fd, hdr)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := e.setTimes(pfd, base, hdr); err != nil {
		return err
	}
	e.stats.Files++
	return nil
}

// dir creates (or updates the metadata of) a directory and makes it the
// cached parent, since the next entries are usually its children.
func (e *extractor) dir(hdr *tar.Header, rel string, pfd int, base string) error {
	err := unix.Mkdirat(pfd, base, 0o700)
	if err != nil && err != unix.EEXIST {
		return fmt.Errorf("creating directory: %w", err)
	}
	const openDir = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(pfd, base, openDir, 0)
	if err == unix.ENOTDIR || err == unix.ELOOP {
		// An existing non-directory (possibly a symlink): replace it.
		if err := unix.Unlinkat(pfd, base, 0); err != nil {
			return fmt.Errorf("removing existing entry: %w", err)
		}
		e.invalidate()
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
			return fmt.Errorf("creating directory: %w", err)
		}
		fd, err = unix.Openat(pfd, base, openDir, 0)
	}
	if err != nil {
		return fmt.Errorf("opening directory: %w", err)
	}
	if err := e.fdMeta(fd, hdr); err != nil {
		unix.Close(fd)
		return err
	}
	e.recordDir(rel, hdr)
	e.setCache(rel, fd) // pfd is not used after this point
	e.stats.Dirs++
	return nil
}

// symlink stores a symlink; its target is kept verbatim and never resolved.
func (e *extractor) symlink(hdr *tar.Header, pfd int, base string) error {
	if err := e.create(pfd, base, func() error { return unix.Symlinkat(hdr.Linkname, pfd, base) }); err != nil {
		return fmt.Errorf("creating symlink: %w", err)
	}
	e.invalidate()
	if err := e.pathMeta(pfd, base, hdr, false); err != nil {
		return err
	}
	e.stats.Symlinks++
	return nil
}

// device creates a character or block device or a FIFO.
func (e *extractor) device(hdr *tar.Header, pfd int, base string) error {
	mode := uint32(hdr.Mode) & 0o7777
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode |= unix.S_IFCHR
	case tar.TypeBlock:
		mode |= unix.S_IFBLK
	default:
		mode |= unix.S_IFIFO
	}
	if hdr.Devmajor < 0 || hdr.Devminor < 0 || hdr.Devmajor > 0xfff || hdr.Devminor > 0xfffff {
		return fmt.Errorf("device number %d:%d out of range: %w", hdr.Devmajor, hdr.Devminor, ErrUnsupported)
	}
	dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	if err := e.create(pfd, base, func() error { return unix.Mknodat(pfd, base, mode, int(dev)) }); err != nil {
		if err == unix.EPERM && hdr.Typeflag != tar.TypeFifo {
			return fmt.Errorf("creating device node requires root (CAP_MKNOD): %w", err)
		}
		return fmt.Errorf("creating device node: %w", err)
	}
	if err := e.pathMeta(pfd, base, hdr, true); err != nil {
		return err
	}
	e.stats.Devices++
	return nil
}

// hardlink links base to an existing non-directory inside the layer. The
// target is resolved in-root and its final component is not followed, so a
// target that is a symlink is linked itself.
func (e *extractor) hardlink(hdr *tar.Header, dirRel string, pfd int, base string) error {
	name, target := hdr.Name, hdr.Linkname
	trel, ok := cleanName(target)
	if !ok {
		return entryError(name, fmt.Sprintf("hardlink target %q escapes the layer directory", target), ErrUnsafePath)
	}
	if trel == "" {
		return entryError(name, fmt.Sprintf("hardlink target %q is the layer root", target), ErrUnsafePath)
	}
	tdir, tbase := splitRel(trel)
	tfd, owned := pfd, false
	if tdir != dirRel {
		var err error
		if tfd, owned, err = e.lookupDir(tdir); err != nil {
			return entryError(name, fmt.Sprintf("resolving hardlink target %q", target), err)
		}
	}
	if owned {
		defer unix.Close(tfd)
	}
	var tst, dst unix.Stat_t
	if err := unix.Fstatat(tfd, tbase, &tst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return entryError(name, fmt.Sprintf("hardlink target %q is not in the layer", target), err)
	}
	if tst.Mode&unix.S_IFMT == unix.S_IFDIR {
		return entryError(name, fmt.Sprintf("hardlink target %q is a directory", target), ErrUnsafePath)
	}
	if unix.Fstatat(pfd, base, &dst, unix.AT_SYMLINK_NOFOLLOW) == nil && dst.Dev == tst.Dev && dst.Ino == tst.Ino {
		e.stats.Hardlinks++ // already linked (e.g. a link to itself)
		return nil
	}
	if err := e.create(pfd, base, func() error { return unix.Linkat(tfd, tbase, pfd, base, 0) }); err != nil {
		return entryError(name, fmt.Sprintf("linking to %q", target), err)
	}
	e.stats.Hardlinks++
	return nil
}

// typeName names a tar type flag for error messages.
func typeName(t byte) string {
	var s string
	switch t {
	case tar.TypeReg, tar.TypeGNUSparse:
		return "regular file"
	case tar.TypeDir:
		return "directory"
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hardlink"
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "FIFO"
	case tar.TypeCont:
		s = " (contiguous file)"
	case 'V':
		s = " (GNU volume header)"
	case 'M':
		s = " (GNU multi-volume continuation)"
	case 'D':
		s = " (GNU dump directory)"
	}
	return fmt.Sprintf("%q%s", t, s)
}
