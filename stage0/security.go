package stage0

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/karman-project/karman/isolators"
	"github.com/karman-project/karman/stage1/poddir"
)

// The security options of an app beyond the defaults: its groups, no_new_privs,
// privileged, its masked and read-only paths, its devices and a seccomp profile
// file. stage0 resolves them into pod.json (poddir.App); the pod's init applies
// them.

// The values of AppSpec.GroupsPolicy (--groups-policy).
const (
	GroupsMerge  = "merge"
	GroupsStrict = "strict"
)

// maxGroups is the kernel's NGROUPS_MAX.
const maxGroups = 65536

// checkSecurity reports every problem of the app's security options.
func (a *AppSpec) checkSecurity() error {
	var errs []error
	if a.Group != "" {
		if err := checkID("group", a.Group); err != nil {
			errs = append(errs, fmt.Errorf("--group %q: %w", a.Group, err))
		}
	}
	switch a.GroupsPolicy {
	case "", GroupsMerge, GroupsStrict:
	default:
		errs = append(errs, fmt.Errorf("--groups-policy %q: use merge (the given groups and the user's groups in the image's /etc/group) or strict (only the given groups)", a.GroupsPolicy))
	}
	if len(a.SupplementalGroups) > maxGroups {
		errs = append(errs, fmt.Errorf("%d supplemental groups: at most %d", len(a.SupplementalGroups), maxGroups))
	}
	for _, g := range a.SupplementalGroups {
		if g > maxID {
			errs = append(errs, fmt.Errorf("--group-add %d: gids are 0 to %d", g, maxID))
			break
		}
	}
	if err := a.pathRules().Check(); err != nil {
		errs = append(errs, err)
	}
	for _, d := range a.Devices {
		if _, err := d.device("", 0, 0, 0); err != nil {
			errs = append(errs, err)
		}
	}
	if a.SeccompProfile != "" {
		switch {
		case a.Seccomp != "":
			errs = append(errs, fmt.Errorf("--seccomp-profile and --seccomp exclude each other: give one filter"))
		case !filepath.IsAbs(a.SeccompProfile):
			errs = append(errs, fmt.Errorf("--seccomp-profile %q: give an absolute path", a.SeccompProfile))
		}
	}
	return errors.Join(errs...)
}

// pathRules are the app's own masked and read-only paths, or nil for the
// defaults; a list not given is the default one.
func (a *AppSpec) pathRules() *poddir.PathRules {
	if a.MaskedPaths == nil && a.ReadonlyPaths == nil {
		return nil
	}
	r := &poddir.PathRules{Masked: slices.Clone(a.MaskedPaths), ReadOnly: slices.Clone(a.ReadonlyPaths)}
	if a.MaskedPaths == nil {
		r.Masked = slices.Clone(poddir.DefaultMaskedPaths)
	}
	if a.ReadonlyPaths == nil {
		r.ReadOnly = slices.Clone(poddir.DefaultReadonlyPaths)
	}
	return r
}

// withGroup is the user spec with the app's Group in place of its group.
func withGroup(user, group string) string {
	if group == "" {
		return user
	}
	u, _, _ := strings.Cut(user, ":")
	if u == "" {
		u = "0"
	}
	return u + ":" + group
}

// appGroups are the app's supplemental groups: the given ones, after the
// image's /etc/group memberships of its user unless the policy is strict;
// without duplicates and without its own group.
func appGroups(as AppSpec, gid uint32, image []uint32) []uint32 {
	var out []uint32
	if as.GroupsPolicy != GroupsStrict {
		out = append(out, image...)
	}
	for _, g := range as.SupplementalGroups {
		if g != gid && !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out
}

// device is d as pod.json has it, for a host node of that type, numbers,
// mode and owner; checked on its face.
func (d DeviceSpec) device(typ string, rdev uint64, mode, uid uint32) (poddir.Device, error) {
	if !filepath.IsAbs(d.HostPath) || strings.ContainsRune(d.HostPath, 0) {
		return poddir.Device{}, fmt.Errorf("--device %q: give the host's device node as an absolute path", d.HostPath)
	}
	p := d.Path
	if p == "" {
		p = path.Clean(d.HostPath)
	}
	access := d.Access
	if access == "" {
		access = "rwm"
	}
	if typ == "" {
		typ = "c" // checked on its face only
	}
	dev := poddir.Device{Path: p, Type: typ, Major: major(rdev), Minor: minor(rdev), Mode: mode & 0o7777, UID: uid, Access: access}
	if err := dev.Check(); err != nil {
		return poddir.Device{}, fmt.Errorf("--device %s: %w", d.HostPath, err)
	}
	return dev, nil
}

func major(rdev uint64) uint32 { return uint32((rdev>>8)&0xfff | (rdev>>32)&^0xfff) }
func minor(rdev uint64) uint32 { return uint32(rdev&0xff | (rdev>>12)&^0xff) }

// resolveDevice stats d's host node: it must be a character or block
// device.
func resolveDevice(d DeviceSpec) (poddir.Device, error) {
	fi, err := os.Stat(d.HostPath)
	if err != nil {
		return poddir.Device{}, fmt.Errorf("--device %s: %w", d.HostPath, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	typ := ""
	switch {
	case !ok:
	case fi.Mode()&fs.ModeCharDevice != 0:
		typ = "c"
	case fi.Mode()&fs.ModeDevice != 0:
		typ = "b"
	}
	if typ == "" {
		return poddir.Device{}, fmt.Errorf("--device %s: not a device node; give a character or block device such as /dev/fuse", d.HostPath)
	}
	dev, err := d.device(typ, st.Rdev, st.Mode, st.Uid)
	dev.GID = st.Gid
	return dev, err
}

// hostDevices lists the host's device nodes below /dev for a privileged
// app, but for those the pod makes itself (its pts, ptmx, console and
// what it mounts there).
func hostDevices() ([]poddir.Device, error) {
	var out []poddir.Device
	err := filepath.WalkDir("/dev", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if p == "/dev" {
				return err
			}
			return nil // gone meanwhile
		}
		name := e.Name()
		if e.IsDir() {
			switch name {
			case "pts", "shm", "mqueue", "fd", ".lxc", ".udev":
				return fs.SkipDir
			}
			return nil
		}
		if e.Type()&fs.ModeDevice == 0 || name == "console" || p == "/dev/ptmx" {
			return nil
		}
		d, err := resolveDevice(DeviceSpec{HostPath: p})
		if err != nil {
			return nil // not one the app could have (a name below /dev it refuses)
		}
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the host's devices for --privileged: %w", err)
	}
	return out, nil
}

// deviceRules are what the app's device cgroup allows beyond the default
// allowlist: everything for a privileged app, else its devices.
func deviceRules(a poddir.App) []specs.LinuxDeviceCgroup {
	if a.Privileged {
		any := int64(-1)
		return []specs.LinuxDeviceCgroup{{Allow: true, Type: "a", Major: &any, Minor: &any, Access: "rwm"}}
	}
	var out []specs.LinuxDeviceCgroup
	for _, d := range a.Devices {
		major, minor := int64(d.Major), int64(d.Minor)
		out = append(out, specs.LinuxDeviceCgroup{Allow: true, Type: d.Type, Major: &major, Minor: &minor, Access: d.Access})
	}
	return out
}

// securityOptions fills app's security options from as: groups, no_new_privs,
// privileged (every capability, no filter, no masks, every host device), paths,
// devices and a seccomp profile file.
func securityOptions(app *poddir.App, as AppSpec) error {
	app.NewPrivs = as.NewPrivileges
	app.Paths = as.pathRules()
	for _, d := range as.Devices {
		dev, err := resolveDevice(d)
		if err != nil {
			return err
		}
		app.Devices = append(app.Devices, dev)
	}
	if as.SeccompProfile != "" {
		b, err := os.ReadFile(as.SeccompProfile)
		if err != nil {
			return fmt.Errorf("--seccomp-profile: %w", err)
		}
		if app.Seccomp, err = isolators.ParseSeccompProfile(b); err != nil {
			return fmt.Errorf("--seccomp-profile %s: %w", as.SeccompProfile, err)
		}
	}
	if as.Privileged {
		app.Privileged, app.AllCaps, app.Unconfined, app.NoMasks = true, true, true, true
		app.Seccomp, app.Paths = nil, nil
		host, err := hostDevices()
		if err != nil {
			return err
		}
		// The app's own come last: where both name one path, its own
		// (with its access) is made last, so it is the one kept.
		app.Devices = append(host, app.Devices...)
	}
	return nil
}
