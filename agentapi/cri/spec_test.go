package cri

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/isolators"
	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/stage1/poddir"
)

// TestSecurityContextSpec: the security context of a sandbox and of a
// container as stage0 specs; what stage0 cannot do is InvalidArgument.
func TestSecurityContextSpec(t *testing.T) {
	s := &Server{}
	hostPIDIPC := &runtimeapi.PodSandboxConfig{Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE},
	}}}
	spec, err := s.sandboxSpec(hostPIDIPC)
	if err != nil || !spec.HostPID || !spec.HostIPC {
		t.Errorf("sandbox of host PID and IPC: HostPID %v, HostIPC %v, %v", spec.HostPID, spec.HostIPC, err)
	}
	for name, ns := range map[string]*runtimeapi.NamespaceOption{
		"userns":     {UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}},
		"target pid": {Pid: runtimeapi.NamespaceMode_TARGET},
		"ipc":        {Ipc: runtimeapi.NamespaceMode_CONTAINER},
	} {
		_, err := s.sandboxSpec(&runtimeapi.PodSandboxConfig{Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: ns}}})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("sandbox %s: %v, want InvalidArgument", name, err)
		}
	}

	sb := &sandboxRecord{config: &runtimeapi.PodSandboxConfig{}}
	hostSB := &sandboxRecord{config: hostPIDIPC}
	container := func(sc *runtimeapi.LinuxContainerSecurityContext, mounts []*runtimeapi.Mount, devices []*runtimeapi.Device) *runtimeapi.ContainerConfig {
		return &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
			Mounts:   mounts, Devices: devices,
			Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: sc},
		}
	}
	dir := t.TempDir()
	tests := []struct {
		name    string
		sb      *sandboxRecord
		c       *runtimeapi.ContainerConfig
		want    stage0.AppSpec
		invalid string
	}{
		{name: "defaults", c: container(nil, nil, nil),
			want: stage0.AppSpec{Seccomp: isolators.SeccompUnconfined, GroupsPolicy: stage0.GroupsMerge, NewPrivileges: true, PIDNamespace: stage0.PIDPod}},
		{name: "groups", c: container(&runtimeapi.LinuxContainerSecurityContext{
			RunAsUser: &runtimeapi.Int64Value{Value: 1000}, RunAsGroup: &runtimeapi.Int64Value{Value: 2000},
			SupplementalGroups: []int64{3000, 4000}, SupplementalGroupsPolicy: runtimeapi.SupplementalGroupsPolicy_Strict, NoNewPrivs: true,
		}, nil, nil), want: stage0.AppSpec{Seccomp: isolators.SeccompUnconfined, User: "1000:2000", SupplementalGroups: []uint32{3000, 4000}, GroupsPolicy: stage0.GroupsStrict, PIDNamespace: stage0.PIDPod}},
		{name: "username and group", c: container(&runtimeapi.LinuxContainerSecurityContext{
			RunAsUsername: "karman", RunAsGroup: &runtimeapi.Int64Value{Value: 50},
		}, nil, nil), want: stage0.AppSpec{Seccomp: isolators.SeccompUnconfined, User: "karman", Group: "50", GroupsPolicy: stage0.GroupsMerge, NewPrivileges: true, PIDNamespace: stage0.PIDPod}},
		{name: "privileged", c: container(&runtimeapi.LinuxContainerSecurityContext{
			Privileged: true, Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/etc/p.json"},
		}, nil, nil), want: stage0.AppSpec{Privileged: true, GroupsPolicy: stage0.GroupsMerge, NewPrivileges: true, PIDNamespace: stage0.PIDPod}},
		{name: "paths and profile", c: container(&runtimeapi.LinuxContainerSecurityContext{
			MaskedPaths: []string{"/proc/kcore"}, ReadonlyPaths: []string{"/proc/sys"}, NoNewPrivs: true,
			Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/etc/p.json"},
		}, nil, nil), want: stage0.AppSpec{MaskedPaths: []string{"/proc/kcore"}, ReadonlyPaths: []string{"/proc/sys"}, SeccompProfile: "/etc/p.json", GroupsPolicy: stage0.GroupsMerge, PIDNamespace: stage0.PIDPod}},
		{name: "host pid", sb: hostSB, c: container(&runtimeapi.LinuxContainerSecurityContext{
			NoNewPrivs: true, NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_NODE},
		}, nil, nil), want: stage0.AppSpec{Seccomp: isolators.SeccompUnconfined, GroupsPolicy: stage0.GroupsMerge, PIDNamespace: stage0.PIDPod}},
		{name: "mounts and devices", c: container(&runtimeapi.LinuxContainerSecurityContext{NoNewPrivs: true}, []*runtimeapi.Mount{
			{HostPath: dir, ContainerPath: "/a", Readonly: true, RecursiveReadOnly: true, SelinuxRelabel: true},
			{HostPath: dir, ContainerPath: "/d", Readonly: true},
			{HostPath: dir, ContainerPath: "/b", Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
			{HostPath: dir, ContainerPath: "/c", Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL},
		}, []*runtimeapi.Device{{HostPath: "/dev/fuse", ContainerPath: "/dev/fuse", Permissions: "rw"}}),
			want: stage0.AppSpec{Seccomp: isolators.SeccompUnconfined,
				Mounts: []poddir.Mount{
					{Source: dir, Target: "/a", ReadOnly: true},
					{Source: dir, Target: "/d", ReadOnly: true, NonRecursive: true},
					{Source: dir, Target: "/b", Propagation: poddir.PropagationSlave},
					{Source: dir, Target: "/c", Propagation: poddir.PropagationShared},
				},
				Devices:      []stage0.DeviceSpec{{HostPath: "/dev/fuse", Path: "/dev/fuse", Access: "rw"}},
				GroupsPolicy: stage0.GroupsMerge, PIDNamespace: stage0.PIDPod,
			}},
		{name: "stdin and tty", c: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Stdin: true, StdinOnce: true, Tty: true},
			want: stage0.AppSpec{Seccomp: isolators.SeccompUnconfined, Stdin: true, StdinOnce: true, TTY: true, GroupsPolicy: stage0.GroupsMerge, NewPrivileges: true, PIDNamespace: stage0.PIDPod}},
		{name: "rro without readonly", c: container(nil, []*runtimeapi.Mount{{HostPath: dir, ContainerPath: "/a", RecursiveReadOnly: true}}, nil), invalid: "needs readonly"},
		{name: "rro shared", c: container(nil, []*runtimeapi.Mount{{HostPath: dir, ContainerPath: "/a", Readonly: true, RecursiveReadOnly: true, Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL}}, nil), invalid: "needs propagation PRIVATE"},
		{name: "negative group", c: container(&runtimeapi.LinuxContainerSecurityContext{SupplementalGroups: []int64{-1}}, nil, nil), invalid: "supplemental group -1"},
		{name: "relative profile", c: container(&runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "p.json"}}, nil, nil), invalid: "absolute path"},
		{name: "node pid alone", c: container(&runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_NODE}}, nil, nil), invalid: "PID namespace NODE"},
	}
	for _, tc := range tests {
		if tc.sb == nil {
			tc.sb = sb
		}
		as, err := s.appSpec(tc.sb, tc.c, "c", "sha256:x")
		if tc.invalid != "" {
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.invalid) {
				t.Errorf("%s: %v, want InvalidArgument saying %q", tc.name, err, tc.invalid)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		tc.want.Image, tc.want.Name = "sha256:x", "c"
		if d := cmp.Diff(tc.want, as); d != "" {
			t.Errorf("%s: (-want +got)\n%s", tc.name, d)
		}
	}
}
