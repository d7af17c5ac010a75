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
//	    [--push HOST/REPO:TAG [--sign-key FILE [--sign-format simple|bundle|both]]]
//	    [--serve-registry DATADIR] [--gen-key DIR]
//	    [--cri-images HOST [--lookalike FILE] [--dynamic-busybox FILE]]
//
// It prints the manifest digest of the built image. With --serve-registry it
// first starts the registry, prints REGISTRY=127.0.0.1:PORT, performs any
// other requested output (a --push host of "REGISTRY" means the served
// registry), and then keeps the registry running until SIGTERM or SIGINT.
// Pushes to hosts other than loopback addresses and localhost are refused.
//
// --gen-key DIR writes a test key pair, DIR/cosign.key (unencrypted PKCS #8
// PEM; cosign's encrypted keys are not read) and DIR/cosign.pub; with
// --sign-key the pushed image is then signed with signing/cosign, in
// cosign's simple-signing format (the sha256-<hex>.sig tag), as a sigstore
// bundle referrer, or both.
//
// --cri-images HOST builds the look-alikes of the images critest pulls
// (testimage.CRIImages) and pushes each under its public repository path
// (registry.k8s.io/e2e-test-images/busybox:1.29-2 as
// HOST/e2e-test-images/busybox:1.29-2), signed with --sign-key if given; it
// prints "REF DIGEST" per public reference, then "CRI-IMAGES=N". HOST
// "REGISTRY" is the --serve-registry one.
package main
