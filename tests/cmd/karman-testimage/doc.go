// Command karman-testimage builds Karman's busybox test images (see package
// tests/testimage) and writes them as OCI layouts or docker archives, pushes
// them to loopback registries, or serves Debian's docker-registry on a free
// loopback port for benchmarks.
//
// Usage:
//
//	karman-testimage [--kind busybox|multilayer|big]
//	    [--big-mb 200 --big-files 900 --big-layers 6]
//	    [--compression gzip|zstd|none] [--platform linux/amd64]
//	    [--layout DIR [--tag TAG]] [--docker-archive FILE [--archive-tag REPO:TAG]]
//	    [--push HOST/REPO:TAG] [--serve-registry DATADIR]
//
// It prints the manifest digest of the built image. With --serve-registry it
// first starts the registry, prints REGISTRY=127.0.0.1:PORT, performs any
// other requested output (a --push host of "REGISTRY" means the served
// registry), and then keeps the registry running until SIGTERM or SIGINT.
// Pushes to hosts other than loopback addresses and localhost are refused.
package main
