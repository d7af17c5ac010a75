package podinit

import (
	"errors"
	"fmt"

	"github.com/karman-project/karman/stage1/poddir"
	"golang.org/x/sys/unix"
)

// Volumes are bind mounts of host paths into an app. The init resolves
// both ends to file descriptors and mounts one onto the other with the
// mount API (open_tree, mount_setattr, move_mount), never by path:
//
//   - the source with openat2(RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS)
//     below Mount.SourceRoot when that is set, so that a symlink someone
//     planted below it ("x" -> "/", "../..") cannot lead out of it;
//   - the target with openat2(RESOLVE_IN_ROOT) inside the app's root
//     (root), so that an image's symlink cannot make the mount land on the
//     host, and refused when it is, or leads to, a path the runtime
//     mounts itself (CheckMountTarget).
//
// What was resolved is what is mounted: a path swapped between the check
// and the mount changes nothing. A read-only volume is made read-only,
// submounts included (only its own mount with Mount.NonRecursive), before
// it is attached, and given its propagation:
// private (the default: nothing crosses), rslave (a slave of its source's
// peer group: the host's mounts below the source appear in the app) or
// rshared (in that peer group: mounts cross both ways). The init clones
// such a source before it makes its own mounts private.

func propagationName(m poddir.Mount) string {
	if m.Propagation == "" {
		return poddir.PropagationPrivate
	}
	return m.Propagation
}

// bindMount mounts m's source on its target in the app rooted at r,
// read-only (submounts too) if asked. The target is created (a directory
// or an empty file, like the source).
func bindMount(r *root, m poddir.Mount) error {
	src, err := poddir.OpenSource(m)
	if err != nil {
		return err
	}
	defer unix.Close(src)
	tree, err := unix.OpenTree(src, "", unix.OPEN_TREE_CLONE|unix.O_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("volume %s: clone the mount: %w", m.Source, err)
	}
	defer unix.Close(tree)
	return attachVolume(r, m, tree)
}

// attachVolume attaches tree, a detached clone of m's source (open_tree
// with OPEN_TREE_CLONE, made by the init at boot or by stage0 for an app
// added to a running pod, whose host paths the init no longer sees), on
// m's target in the app rooted at r.
func attachVolume(r *root, m poddir.Mount, tree int) error {
	var st unix.Stat_t
	if err := unix.Fstat(tree, &st); err != nil {
		return fmt.Errorf("volume source %s: %w", m.Source, err)
	}
	// The image's symlinks may lead the target elsewhere in the root:
	// look before creating anything, and again at what was created.
	at, err := r.resolve(m.Target)
	if err != nil {
		return fmt.Errorf("volume target %s: %w", m.Target, err)
	}
	if err := poddir.CheckResolvedTarget(m.Target, at); err != nil {
		return err
	}
	var dst int
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		dst, err = r.mkdirAll(m.Target, 0o755)
	} else {
		dst, err = r.mkfile(m.Target)
	}
	if errors.Is(err, unix.EROFS) { // under /sys, say
		return fmt.Errorf("volume target %s: %w: it does not exist and its file system is read-only; mount the volume on a path that exists there (such as /sys/fs/cgroup), or elsewhere", m.Target, err)
	}
	if err != nil {
		return fmt.Errorf("volume target %s: %w", m.Target, err)
	}
	defer unix.Close(dst)
	if at, err = r.pathOf(dst); err != nil {
		return fmt.Errorf("volume target %s: %w", m.Target, err)
	}
	if err := poddir.CheckResolvedTarget(m.Target, at); err != nil {
		return err
	}
	attr := &unix.MountAttr{Propagation: unix.MS_PRIVATE}
	switch m.Propagation {
	case poddir.PropagationSlave:
		attr.Propagation = unix.MS_SLAVE
	case poddir.PropagationShared:
		attr.Propagation = unix.MS_SHARED
	}
	if m.ReadOnly && !m.NonRecursive {
		attr.Attr_set = unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
		return fmt.Errorf("volume %s: set read-only and propagation %s: %w", m.Source, propagationName(m), err)
	}
	if m.ReadOnly && m.NonRecursive {
		if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return fmt.Errorf("volume %s: make it read-only: %w", m.Source, err)
		}
	}
	if err := unix.MoveMount(tree, "", dst, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.Source, m.Target, err)
	}
	return nil
}
