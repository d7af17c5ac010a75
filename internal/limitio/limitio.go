// Package limitio reads input that must not be larger than a bound: files
// and streams that come from users, images or registries.
package limitio

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrTooLarge is returned when the input is larger than allowed.
var ErrTooLarge = errors.New("too large")

// ReadAll reads r to its end, refusing more than limit bytes.
func ReadAll(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d bytes: %w", limit, ErrTooLarge)
	}
	return b, nil
}

// ReadFile reads the file at path, refusing more than limit bytes.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := ReadAll(f, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}
