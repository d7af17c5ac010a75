package stage0

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/karman-project/karman/image/rootfs"
)

// Image volumes: a stored image rendered in a running pod's directory,
// volumes/NAME, whose root an app mounts read-only as a volume (the CRI's
// image volumes). Removing the pod removes them (sweep).

// VolumesDir is where a pod's image volumes are rendered.
const VolumesDir = "volumes"

func volumeLease(uuid, name string) string { return "pod-" + uuid + "-vol-" + name }

// AddImageVolume renders the stored image d as the image volume name of
// the running pod uuid and returns the directory of its root.
func (r *Runtime) AddImageVolume(ctx context.Context, uuid, name string, d v1.Hash) (string, error) {
	const what = "image volume"
	p, _, lock, err := r.runningPod(ctx, uuid, what)
	if err != nil {
		return "", err
	}
	defer lock.Unlock()
	if !validAppName(name) {
		return "", fmt.Errorf("%s %q: use lower-case letters, digits and '-': %w", what, name, ErrInvalid)
	}
	if err := os.MkdirAll(filepath.Join(p.path, VolumesDir), 0o700); err != nil {
		return "", fmt.Errorf("%s %s: %w", what, name, err)
	}
	rf, err := rootfs.Render(ctx, r.images, d, filepath.Join(p.path, VolumesDir, name), volumeLease(p.uuid, name), rootfs.Options{})
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", what, name, err)
	}
	return rf.Path, nil
}

// RemoveImageVolume removes the image volume name of the pod uuid (which
// need not run); one that is not there is not an error.
func (r *Runtime) RemoveImageVolume(_ context.Context, uuid, name string) error {
	p, err := r.find(uuid)
	if err != nil {
		return err
	}
	if !validAppName(name) {
		return fmt.Errorf("image volume %q: %w", name, ErrInvalid)
	}
	return rootfs.Remove(r.images, filepath.Join(p.path, VolumesDir, name), volumeLease(p.uuid, name))
}
