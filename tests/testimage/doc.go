// Package testimage builds small, deterministic busybox container images for
// Karman's tests and benchmarks, from the host's Debian busybox-static
// (/bin/busybox).
//
// Busybox is a one-layer image with busybox, its applet symlinks and minimal
// /etc files; MultiLayer adds layers with whiteout and opaque-directory
// entries; Big adds many megabytes of seeded, partly compressible data for
// fetch benchmarks. Index combines images for several platforms. Layers are
// real tar streams compressed with gzip, zstd or not at all (see Compression)
// under OCI media types; images can be written as OCI image layouts
// (WriteLayout, resolvable as oci:DIR:TAG) or `docker save` archives
// (WriteDockerArchive), or pushed with package tests/testregistry.
//
// All builders return errors wrapping ErrNoBusybox when busybox-static is
// missing; tests use Require or Must, which call testenv.Missing then:
//
//	img := testimage.Must(t)(testimage.MultiLayer(testimage.Options{Compression: testimage.Zstd}))
//	dir := t.TempDir()
//	digest, err := testimage.WriteLayout(dir, "latest", img) // oci:dir:latest
package testimage
