// Package store is Karman's content-addressed image store.
//
// Layout under the store root (DIR/images):
//
//	blobs/sha256/HEX    manifests, configs and layer blobs, by digest
//	layers/sha256/HEX/  each layer blob extracted once, shared by every image
//	refs.json           the refs index: name -> manifest digest
//	leases/ID.json      manifests held by pods, kept by gc while the owner lives
//	tmp/                in-flight downloads and extractions
//	lock                shared by every fetch and render, exclusive for gc
//
// Invariants: a blob is renamed into blobs/ only after its digest and size
// were checked; an extracted layer is renamed into layers/ only after its
// blob was; a manifest is committed only after its config and layers, so a
// manifest in the store means the image is complete. Anything a killed
// process leaves behind is in tmp/, which gc empties; the next fetch simply
// starts over for what is missing.
//
// Damage after commit (a disk fault, a hand edit) is contained: manifests
// and configs are hashed again on every read, and an image that fails is
// reported as broken (*BrokenError: the image, the blob, the fix) without
// hiding the others from Images or stopping GC. Check hashes every blob,
// layer blobs included, and can remove the damaged ones; PutBlob and
// IngestLayer replace damaged copies, so a fetch repairs an image. A
// corrupt refs index (*RefsError) stops only name lookups: a fetch moves
// it aside and starts a new one, and GC removes no blob or layer while
// the index or that copy is damaged.
//
// Extracted layers use overlayfs's whiteout format (see package layer) so
// that a pod's rootfs can be an overlay mount of them.
package store
