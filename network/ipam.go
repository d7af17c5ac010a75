package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/internal/lockfile"
)

// ipam hands out the addresses of one subnet. Its state is a directory:
// one file per reserved address, named by the address and holding the
// pod's UUID and network namespace, a file "last" with the last address handed out (addresses
// are handed out round-robin so that a freed one is not reused at once),
// and a lock file that serialises every karman process. A reservation is
// keyed by the pod's UUID, which the pod's record names before the
// reservation exists: a process that dies at any point leaves nothing that
// Teardown (gc) cannot find. A reservation whose network namespace is gone
// is free: the namespace is made before the reservation, and removed when
// the pod ends (by the supervisor, without exec'ing anything), so that an
// ended pod's address is free before gc collects the pod. A pod whose
// supervisor was killed keeps its namespace, and its address, until gc.
type ipam struct {
	dir    string
	prefix netip.Prefix
}

const ipamLockTimeout = 30 * time.Second

func (m *ipam) lock(ctx context.Context) (*lockfile.Lock, error) {
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return nil, fmt.Errorf("address reservations: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, ipamLockTimeout)
	defer cancel()
	l, err := lockfile.Acquire(ctx, filepath.Join(m.dir, "lock"), true)
	if err != nil {
		return nil, fmt.Errorf("address reservations in %s: %w", m.dir, err)
	}
	return l, nil
}

// gateway is the subnet's first address, the bridge's.
func (m *ipam) gateway() netip.Addr { return m.prefix.Addr().Next() }

// broadcast is the subnet's last address.
func (m *ipam) broadcast() netip.Addr {
	a := m.prefix.Addr().As4()
	host := uint32(1)<<(32-m.prefix.Bits()) - 1
	v := (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// allocate reserves a free address for uuid.
func (m *ipam) allocate(ctx context.Context, uuid, netns string) (netip.Addr, error) {
	l, err := m.lock(ctx)
	if err != nil {
		return netip.Addr{}, err
	}
	defer l.Unlock()
	used := map[netip.Addr]bool{}
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, e := range ents {
		if a, err := netip.ParseAddr(e.Name()); err == nil {
			used[a] = m.held(e.Name())
		}
	}
	first, last := m.gateway().Next(), m.broadcast().Prev()
	start := first
	if b, err := os.ReadFile(filepath.Join(m.dir, "last")); err == nil {
		if a, err := netip.ParseAddr(strings.TrimSpace(string(b))); err == nil && m.prefix.Contains(a) && a.Compare(last) < 0 && a.Compare(first) >= 0 {
			start = a.Next()
		}
	}
	a := start
	for {
		if !used[a] {
			if err := os.WriteFile(filepath.Join(m.dir, a.String()), []byte(uuid+"\n"+netns+"\n"), 0o600); err != nil {
				return netip.Addr{}, fmt.Errorf("reserve %s: %w", a, err)
			}
			if err := os.WriteFile(filepath.Join(m.dir, "last"), []byte(a.String()+"\n"), 0o600); err != nil {
				return netip.Addr{}, fmt.Errorf("reserve %s: %w", a, err)
			}
			return a, nil
		}
		if a = a.Next(); a.Compare(last) > 0 {
			a = first
		}
		if a == start {
			return netip.Addr{}, fmt.Errorf("all %d addresses of %s are reserved by pods; collect exited pods with `karman gc` or give the default network a larger subnet in %s: %w",
				len(used), m.prefix, ConfigFile, ErrExhausted)
		}
	}
}

// held tells whether the reservation in file name still holds: its pod's
// network namespace is still bound (a file left where /run does not
// survive a reboot holds nothing).
func (m *ipam) held(name string) bool {
	b, err := os.ReadFile(filepath.Join(m.dir, name))
	if err != nil {
		return false
	}
	_, ns, _ := strings.Cut(string(b), "\n")
	ns = strings.TrimSpace(ns)
	if ns == "" {
		return true
	}
	var st unix.Statfs_t
	if err := unix.Statfs(ns, &st); err != nil {
		return !errors.Is(err, unix.ENOENT)
	}
	return st.Type == unix.NSFS_MAGIC
}

// owner is the pod UUID a reservation file names.
func owner(b []byte) string {
	u, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(u)
}

// release frees every address reserved for uuid; hint, when valid, is
// checked first and spares a scan of the directory.
func (m *ipam) release(uuid string, hint netip.Addr) error {
	if _, err := os.Stat(m.dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	l, err := m.lock(context.Background())
	if err != nil {
		return err
	}
	defer l.Unlock()
	owned := func(name string) bool {
		b, err := os.ReadFile(filepath.Join(m.dir, name))
		return err == nil && owner(b) == uuid
	}
	if hint.IsValid() {
		if owned(hint.String()) {
			return os.Remove(filepath.Join(m.dir, hint.String()))
		}
	}
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if _, err := netip.ParseAddr(e.Name()); err == nil && owned(e.Name()) {
			errs = append(errs, os.Remove(filepath.Join(m.dir, e.Name())))
		}
	}
	return errors.Join(errs...)
}

// Reservations lists the reserved addresses of a subnet's state directory
// and the pods that hold them (for tests and leak checks).
func Reservations(dir string) (map[string]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, e := range ents {
		if _, err := netip.ParseAddr(e.Name()); err == nil {
			if b, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil {
				out[e.Name()] = owner(b)
			}
		}
	}
	return out, nil
}
