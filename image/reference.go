package image

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/google/go-containerregistry/pkg/name"
)

// Transport says where an image comes from.
type Transport string

// Transports Karman reads images from.
const (
	Registry      Transport = "docker"
	OCILayout     Transport = "oci"
	DockerArchive Transport = "docker-archive"
)

// Reference names an image to fetch.
//
//	registry/repo:tag, registry/repo@sha256:...  Transport Registry
//	oci:DIR[:TAG]                                Transport OCILayout
//	docker-archive:FILE                          Transport DockerArchive
type Reference struct {
	Transport Transport
	// Name is the normalised registry reference, or the path of the layout
	// directory or archive file.
	Name string
	// Tag selects an image inside an OCI layout; empty means the only one.
	Tag string
}

// ParseReference parses the command-line form of an image reference.
func ParseReference(s string) (Reference, error) {
	switch {
	case s == "":
		return Reference{}, fmt.Errorf("empty image reference: %w", ErrInvalidReference)
	case strings.HasPrefix(s, "oci:"):
		rest := strings.TrimPrefix(s, "oci:")
		dir, tag := rest, ""
		// A tag follows the last colon unless that colon is part of the path.
		if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.Contains(rest[i+1:], "/") {
			dir, tag = rest[:i], rest[i+1:]
		}
		if dir == "" {
			return Reference{}, fmt.Errorf("image %q: oci: needs a directory, as in oci:/path/to/layout[:tag]: %w", s, ErrInvalidReference)
		}
		return Reference{Transport: OCILayout, Name: dir, Tag: tag}, nil
	case strings.HasPrefix(s, "docker-archive:"):
		file := strings.TrimPrefix(s, "docker-archive:")
		if file == "" {
			return Reference{}, fmt.Errorf("image %q: docker-archive: needs a file, as in docker-archive:/path/image.tar: %w", s, ErrInvalidReference)
		}
		return Reference{Transport: DockerArchive, Name: file}, nil
	}
	s = strings.TrimPrefix(s, "docker://")
	// Karman has no default registry: the first component must be a host.
	host, _, found := strings.Cut(s, "/")
	if !found || !(strings.ContainsAny(host, ".:") || host == "localhost") {
		return Reference{}, fmt.Errorf("image %q names no registry host; write it in full, as in %s, or use oci:DIR or docker-archive:FILE: %w", s, withHost(s), ErrInvalidReference)
	}
	ref, err := name.ParseReference(s, name.StrictValidation)
	if err != nil {
		// Tags are optional: retry leniently so "host/repo" means ":latest".
		if ref, err = name.ParseReference(s); err != nil {
			// The library's message holds the name as written: quoted
			// when that would break the error's one line.
			msg := err.Error()
			if strings.ContainsFunc(msg, func(r rune) bool { return !unicode.IsPrint(r) }) {
				msg = strconv.Quote(msg)
			}
			return Reference{}, fmt.Errorf("image %q: %s: %w", s, msg, ErrInvalidReference)
		}
	}
	return Reference{Transport: Registry, Name: ref.Name()}, nil
}

// String returns the reference in the form ParseReference reads.
func (r Reference) String() string {
	switch r.Transport {
	case OCILayout:
		// A colon ends the directory unless a '/' follows it: a directory
		// such as "x:" or "a:b" needs the colon of an empty tag.
		i := strings.LastIndexByte(r.Name, ':')
		if r.Tag != "" || i >= 0 && !strings.Contains(r.Name[i+1:], "/") {
			return "oci:" + r.Name + ":" + r.Tag
		}
		return "oci:" + r.Name
	case DockerArchive:
		return "docker-archive:" + r.Name
	}
	return r.Name
}

// withHost is the example of a name in full that an error suggests for s:
// s behind a registry host, or a placeholder when s holds characters
// (newlines, controls, quotes) that would garble a one-line message.
func withHost(s string) string {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) || r == '"' }) {
		return "127.0.0.1:5000/REPO"
	}
	return "127.0.0.1:5000/" + s
}
