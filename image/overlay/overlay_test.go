package overlay_test

import (
	"os"
	"path/filepath"
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
