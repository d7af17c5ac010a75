package cgroups

import (
	"fmt"
	"slices"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/containerd/cgroups/v3/cgroup2"
	"golang.org/x/sys/unix"
)

// deviceRules are an app's device rules: DeviceAllowlist, then what r
// allows beyond it. A rule without a major or minor number has any (the
// eBPF compiler needs both).
func deviceRules(r Resources) []specs.LinuxDeviceCgroup {
	out := slices.Clone(DeviceAllowlist)
	for _, d := range r.Devices {
		if d.Major == nil {
			d.Major = ptr(-1)
		}
		if d.Minor == nil {
			d.Minor = ptr(-1)
		}
		out = append(out, d)
	}
	return out
}

// attachDeviceFilter enforces rules (deviceRules) on a v2 cgroup directory:
// cgroup v2 has no devices controller, the kernel asks the eBPF programs
// of type BPF_PROG_TYPE_CGROUP_DEVICE attached to the cgroup and its
// ancestors instead. containerd's cgroup2 compiles the rules (the same
// runtime-spec rules the v1 devices controller is given) into such a
// program and attaches it with BPF_F_ALLOW_MULTI, so programs of the
// parents (systemd's DevicePolicy, say) keep applying too. The attachment
// holds the program for as long as the cgroup exists: nothing to undo.
func attachDeviceFilter(dir string, rules []specs.LinuxDeviceCgroup) error {
	insts, license, err := cgroup2.DeviceFilter(rules)
	if err != nil {
		return fmt.Errorf("compiling the device filter: %w", err)
	}
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if _, err := cgroup2.LoadAttachCgroupDeviceFilter(insts, license, fd); err != nil {
		return fmt.Errorf("attaching the eBPF device filter to %s (needs kernel 4.15+ and CAP_BPF or CAP_SYS_ADMIN): %w", dir, err)
	}
	return nil
}
