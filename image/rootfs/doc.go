// Package rootfs renders a pod's root filesystem from an image in the
// store.
//
// The normal rendering is an overlayfs mount: the image's extracted layers
// are the read-only lower directories (shared by every pod and image that
// uses them) and the pod gets its own upper and work directories, so a
// rendering costs one mount whatever the image's size. Where overlayfs is
// unavailable (or refused), the layers are copied into a private directory
// instead, applying whiteouts and opaque directories as overlayfs would.
//
// A rendering holds a lease on the image in the store, owned by the
// rendering's directory: `image rm` and `image gc` never remove the layers
// of a rootfs that exists.
package rootfs
