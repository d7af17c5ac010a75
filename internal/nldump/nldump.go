package nldump

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// attempts bounds the retries: each dump takes microseconds, and the
// tables change only when a link or route is added or removed.
const attempts = 10

// Retry calls dump until its reply was not interrupted by a concurrent
// change, at most a bounded number of times.
func Retry[T any](dump func() ([]T, error)) ([]T, error) {
	for i := 1; ; i++ {
		out, err := dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
		if i == attempts {
			return nil, fmt.Errorf("the kernel's table changed during each of %d reads; try again: %w", attempts, err)
		}
	}
}
