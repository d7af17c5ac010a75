package registries

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// File is the configuration's name in the configuration directory.
const File = "registries.conf"

// MaxFileSize bounds what is read of the file.
const MaxFileSize = 1 << 20

// Error classes.
var (
	// ErrInvalid: registries.conf does not load.
	ErrInvalid = errors.New("invalid registry configuration")
	// ErrBlocked: an entry with blocked = true covers the reference.
	ErrBlocked = errors.New("blocked by the registry configuration")
)

// PullFrom says which references a mirror serves (pull-from-mirror).
type PullFrom string

// The values of pull-from-mirror. The empty value is All.
const (
	All        PullFrom = "all"
	DigestOnly PullFrom = "digest-only"
	TagOnly    PullFrom = "tag-only"
)

// Config is a loaded registries.conf. The zero value (and nil) rewrites
// nothing: every reference is pulled from where it says.
type Config struct {
	// Path is the file it was read from ("" when there is none).
	Path       string
	Registries []Registry
	// UnqualifiedSearch and ShortNameMode are checked and kept, but not
	// used: karman refuses short names.
	UnqualifiedSearch []string
	ShortNameMode     string
}

// Registry is one [[registry]] entry.
type Registry struct {
	// Prefix is the part of references the entry covers, as written
	// (prefix, or else location), with docker.io for index.docker.io. A
	// wildcard prefix "*.example.com" covers the hosts under example.com.
	Prefix   string
	Wildcard bool
	// Location is where the prefix's images are: Prefix when the entry
	// writes none, "" for a wildcard entry (the reference is used as it
	// is). LocationSet says whether the entry writes location = "...":
	// only then is it tried after mirrors that failed.
	Location    string
	LocationSet bool
	Insecure    bool
	Blocked     bool
	// MirrorByDigestOnly makes every mirror DigestOnly.
	MirrorByDigestOnly bool
	Mirrors            []Mirror
	// Line is the entry's line in the file (0 if unknown).
	Line int
}

// Mirror is one [[registry.mirror]] of an entry.
type Mirror struct {
	Location string
	Insecure bool
	PullFrom PullFrom
	Line     int
}

// Load reads dir/registries.conf. A missing file is an empty
// configuration. A registries.conf.d directory with files in it is
// refused: karman reads no drop-ins, and ignoring one could ignore a
// blocked entry.
func Load(dir string) (*Config, error) {
	path := filepath.Join(dir, File)
	dropIns := path + ".d"
	if ents, err := os.ReadDir(dropIns); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("%s: karman reads no drop-in files; merge them into %s and remove the directory: %w", dropIns, path, ErrInvalid)
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Config{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("registry configuration: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("registry configuration %s: %w", path, err)
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes: %w", path, MaxFileSize, ErrInvalid)
	}
	return Parse(path, b)
}

// Parse reads a registries.conf document; path names it in errors. Every
// problem found is reported, on one line, each with its line number.
func Parse(path string, data []byte) (*Config, error) {
	return parse(path, data)
}

// problems is several errors reported at once, on one line.
type problems []error

func (p problems) Error() string {
	s := make([]string, len(p))
	for i, e := range p {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

func (p problems) Unwrap() []error { return p }
