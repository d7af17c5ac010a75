// Package stage1 is the pod supervisor that stage0 execs into and the pod's
// init: namespaces, rootfs, mounts, starting the apps, reaping, exit status
// and teardown. stage0 and stage1 talk through a versioned exec interface.
package stage1
