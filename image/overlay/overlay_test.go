package overlay_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/karman-project/karman/image/overlay"
	"github.com/karman-project/karman/tests/testenv"
)

// TestMountPathsWithSeparators: a store or pod directory whose path holds
// "," or ":" (which separate options and layers in an overlayfs option
// string) still mounts, with every layer in place.
func TestMountPathsWithSeparators(t *testing.T) {
	testenv.RequireRoot(t, "mounting overlayfs")
	for _, name := range []string{"plain", "a,b", "a:b"} {
		t.Run(name, func(t *testing.T) {
			base := filepath.Join(t.TempDir(), name)
			var layers []string
			for _, l := range []string{"l1", "l2"} {
				d := filepath.Join(base, "layers", l)
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(d, l), []byte(l), 0o644); err != nil {
					t.Fatal(err)
				}
				layers = append(layers, d)
			}
			dir := filepath.Join(base, "render")
			for _, d := range []string{dir, filepath.Join(dir, "rootfs")} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := overlay.Prepare(dir); err != nil {
				t.Fatal(err)
			}
			if err := overlay.Mount(dir, layers); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unix.Unmount(filepath.Join(dir, "rootfs"), unix.MNT_DETACH) })
			for _, l := range []string{"l1", "l2"} {
				if b, err := os.ReadFile(filepath.Join(dir, "rootfs", l)); err != nil || string(b) != l {
					t.Errorf("layer file %s through the overlay: %q, %v", l, b, err)
				}
			}
		})
	}
}

// TestDetachedLongLayerPaths: layers whose paths together exceed the 255
// bytes fsconfig takes in one string value still make a detached overlay
// (an app added to a running pod, from a store deep in the file system),
// with every layer in place.
func TestDetachedLongLayerPaths(t *testing.T) {
	testenv.RequireRoot(t, "mounting overlayfs")
	base := filepath.Join(t.TempDir(), strings.Repeat("d", 60))
	var layers []string
	for _, l := range []string{"l1", "l2", "l3"} {
		d := filepath.Join(base, "layers", "sha256", l+strings.Repeat("0", 62))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, l), []byte(l), 0o644); err != nil {
			t.Fatal(err)
		}
		layers = append(layers, d)
	}
	if n := len(strings.Join(layers, ":")); n < 256 {
		t.Fatalf("the layer list is %d bytes; the test needs more than 255", n)
	}
	dir := filepath.Join(base, "render")
	target := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := overlay.Prepare(dir); err != nil {
		t.Fatal(err)
	}
	mfd, err := overlay.Detached(dir, layers)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
	for _, l := range []string{"l1", "l2", "l3"} {
		if b, err := os.ReadFile(filepath.Join(target, l)); err != nil || string(b) != l {
			t.Errorf("layer file %s through the overlay: %q, %v", l, b, err)
		}
	}
}
