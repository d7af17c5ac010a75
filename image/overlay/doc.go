// Package overlay mounts a rendering directory's root as an overlayfs of
// extracted layers. It is a leaf package (x/sys/unix only) so that the
// lean stage1 binary, which mounts deferred renderings inside the pod's
// mount namespace, can use it without linking the image store.
package overlay
