package rootfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/image/overlay"
	"github.com/karman-project/karman/image/store"
)

// Options for Render.
type Options struct {
	// NoOverlay copies the layers instead of mounting an overlay.
	NoOverlay bool
	// Deferred prepares an overlay rendering without mounting it: the
	// caller mounts it later with Mount, typically inside the pod's own
	// mount namespace, so that the mount dies with the pod.
	Deferred bool
}

// Rootfs is a rendered root filesystem.
type Rootfs struct {
	// Path is the directory to pivot into: Dir/rootfs.
	Path string
	// Dir holds the rendering (rootfs, upper, work).
	Dir string
	// Overlay tells whether Path is an overlay mount or a copy.
	Overlay bool
	// Lease is the store lease that keeps the image's layers.
	Lease string
	// Layers are the extracted layer directories, bottom first; empty
	// when Path is a copy.
	Layers []string
}

// Render renders image d into dir (which must not exist yet) and leases
// the image under leaseID. On failure nothing is left: no mount, no lease,
// no directory.
func Render(ctx context.Context, st *store.Store, d v1.Hash, dir, leaseID string, o Options) (_ *Rootfs, err error) {
	lk, err := st.Use(ctx)
	if err != nil {
		return nil, err
	}
	defer lk.Unlock()
	m, err := st.Manifest(d)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", d, err)
	}
	layers := make([]string, 0, len(m.Layers))
	for _, l := range m.Layers {
		if !st.HasLayer(l.Digest) {
			return nil, fmt.Errorf("render %s: layer %s is not extracted; fetch the image again", d, l.Digest)
		}
		layers = append(layers, st.LayerPath(l.Digest))
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("render %s: %w", d, err)
	}
	r := &Rootfs{Path: filepath.Join(dir, "rootfs"), Dir: dir, Lease: leaseID}
	defer func() {
		if err != nil {
			unix.Unmount(r.Path, unix.MNT_DETACH)
			st.RemoveLease(leaseID)
			os.RemoveAll(dir)
		}
	}()
	if err := st.AddLease(leaseID, d, dir); err != nil {
		return nil, err
	}
	if err := os.Mkdir(r.Path, 0o755); err != nil {
		return nil, err
	}
	if !o.NoOverlay && o.Deferred {
		r.Overlay, r.Layers = true, layers
		return r, overlay.Prepare(dir)
	}
	if !o.NoOverlay {
		err := overlay.Prepare(dir)
		if err == nil {
			err = overlay.Mount(dir, layers)
		}
		if err == nil {
			r.Overlay, r.Layers = true, layers
			return r, nil
		}
		if !errors.Is(err, overlay.ErrUnavailable) {
			return nil, fmt.Errorf("render %s: %w", d, err)
		}
	}
	if err := flatten(ctx, layers, r.Path); err != nil {
		return nil, fmt.Errorf("render %s (copying layers): %w", d, err)
	}
	return r, nil
}

// Remove undoes Render: unmounts, removes the directory and drops the
// lease. It is idempotent, and refuses to delete files below a mount it
// could not take down.
func Remove(st *store.Store, dir, leaseID string) error {
	p := filepath.Join(dir, "rootfs")
	if err := unix.Unmount(p, 0); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", p, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove rootfs %s: %w", dir, err)
	}
	return st.RemoveLease(leaseID)
}
