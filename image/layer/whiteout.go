//go:build linux

package layer

import (
	"archive/tar"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix     = ".wh."
	whiteoutMetaPrefix = ".wh..wh."
	whiteoutOpaque     = ".wh..wh..opq"
	opaqueXattr        = "trusted.overlay.opaque"
)

type whiteoutKind int

const (
	notWhiteout whiteoutKind = iota
	whiteout                 // dir/.wh.NAME: hide NAME
	opaque                   // dir/.wh..wh..opq: hide the lower contents of dir
	aufsMeta                 // .wh..wh.* other than .opq, or beneath one: skipped
)

// classifyWhiteout decides how an entry whose path contains ".wh." is
// handled. On refusal it returns the reason and the sentinel to wrap.
func classifyWhiteout(dirRel, base string) (whiteoutKind, string, error) {
	for rest := dirRel; rest != ""; {
		comp := rest
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			comp, rest = rest[:i], rest[i+1:]
		} else {
			rest = ""
		}
		switch {
		case strings.HasPrefix(comp, whiteoutMetaPrefix):
			return aufsMeta, "", nil
		case strings.HasPrefix(comp, whiteoutPrefix):
			return notWhiteout, fmt.Sprintf("whiteout name %q used as a parent directory", comp), ErrUnsupported
		}
	}
	switch {
	case base == whiteoutOpaque:
		return opaque, "", nil
	case strings.HasPrefix(base, whiteoutMetaPrefix):
		return aufsMeta, "", nil
	case !strings.HasPrefix(base, whiteoutPrefix):
		return notWhiteout, "", nil
	}
	switch target := base[len(whiteoutPrefix):]; target {
	case "":
		return notWhiteout, "whiteout without a name", ErrUnsupported
	case ".", "..":
		return notWhiteout, fmt.Sprintf("whiteout of %q", target), ErrUnsafePath
	}
	return whiteout, "", nil
}

// whiteout replaces target in dirRel with an overlayfs whiteout: a character
// device 0:0.
func (e *extractor) whiteout(hdr *tar.Header, dirRel, target string) error {
	pfd, err := e.parent(dirRel)
	if err != nil {
		return entryError(hdr.Name, fmt.Sprintf("resolving parent directory %q", dirRel), err)
	}
	if err := e.clear(pfd, target); err != nil {
		return entryError(hdr.Name, fmt.Sprintf("removing %q for whiteout", target), err)
	}
	if err := unix.Mknodat(pfd, target, unix.S_IFCHR, 0); err != nil {
		what := "creating whiteout device"
		if err == unix.EPERM {
			what = "creating whiteout device requires root (CAP_MKNOD) on this kernel"
		}
		return entryError(hdr.Name, what, err)
	}
	if err := unix.Fchownat(pfd, target, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); e.chownFailed(err) {
		return entryError(hdr.Name, "changing whiteout owner", err)
	}
	if err := e.setTimes(pfd, target, hdr); err != nil {
		return entryError(hdr.Name, "setting whiteout times", err)
	}
	e.stats.Whiteouts++
	return nil
}

// opaque marks dirRel (created if missing) opaque for overlayfs.
func (e *extractor) opaque(hdr *tar.Header, dirRel string) error {
	pfd, err := e.parent(dirRel)
	if err != nil {
		return entryError(hdr.Name, fmt.Sprintf("resolving opaque directory %q", dirRel), err)
	}
	// pfd is an O_PATH descriptor, which fsetxattr rejects; its /proc magic
	// link reaches the very same directory.
	if err := unix.Setxattr(e.procPath(pfd, ""), opaqueXattr, []byte("y"), 0); err != nil {
		what := "setting " + opaqueXattr
		if err == unix.EPERM {
			what += " requires root (CAP_SYS_ADMIN)"
		}
		return entryError(hdr.Name, what, err)
	}
	e.stats.Whiteouts++
	return nil
}
