// Package lockfile provides advisory file locks (flock(2)) that wait with a
// context. The kernel drops a lock when its holder dies, so a crashed
// process never leaves a stale lock behind; Karman builds its daemonless
// state on that property.
package lockfile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ErrWouldBlock is returned by TryLock when another process holds the lock.
var ErrWouldBlock = errors.New("lock held by another process")

// Lock is a held lock; Unlock releases it.
type Lock struct{ f *os.File }

// TryLock takes the lock on path without waiting, creating the file if
// needed. It returns ErrWouldBlock when another process holds it.
func TryLock(path string, exclusive bool) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	return lock(f, path, exclusive)
}

// TryLockDir is TryLock on an existing directory, which is never created:
// a pod directory is its own lock, and may be moved or removed by another
// process at any moment (then the error wraps fs.ErrNotExist).
func TryLockDir(path string, exclusive bool) (*Lock, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	return lock(f, path, exclusive)
}

func lock(f *os.File, path string, exclusive bool) (*Lock, error) {
	var err error
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	for {
		err = unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, ErrWouldBlock
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// Acquire takes the lock on path, waiting until it is free or ctx ends.
func Acquire(ctx context.Context, path string, exclusive bool) (*Lock, error) {
	return acquire(ctx, func() (*Lock, error) { return TryLock(path, exclusive) }, path)
}

// AcquireDir is Acquire for TryLockDir.
func AcquireDir(ctx context.Context, path string, exclusive bool) (*Lock, error) {
	return acquire(ctx, func() (*Lock, error) { return TryLockDir(path, exclusive) }, path)
}

func acquire(ctx context.Context, try func() (*Lock, error), path string) (*Lock, error) {
	delay := time.Millisecond
	for {
		l, err := try()
		if !errors.Is(err, ErrWouldBlock) {
			return l, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for lock %s: %w", path, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 50*time.Millisecond)
	}
}

// File returns the locked file, for callers that hand the lock to a child.
func (l *Lock) File() *os.File { return l.f }

// Unlock releases the lock. It is safe to call on a nil Lock.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
