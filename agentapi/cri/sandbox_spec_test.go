package cri

import (
	"log/slog"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/network"
)

// TestSandboxSpec: a PodSandboxConfig as stage0's pod: declared ports
// (host port 0) are not forwarded, the host's network takes no forwards,
// DNS options and sysctls pass, what cannot be done is refused.
func TestSandboxSpec(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler), cfg: Config{StateDir: "/state"}}
	c := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "ns"},
		Hostname: "web-0",
		PortMappings: []*runtimeapi.PortMapping{
			{ContainerPort: 80, HostPort: 8080}, {Protocol: runtimeapi.Protocol_UDP, ContainerPort: 53, HostPort: 5353}, {ContainerPort: 9090},
		},
		DnsConfig: &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"ns.svc"}, Options: []string{"ndots:5"}},
		Linux:     &runtimeapi.LinuxPodSandboxConfig{Sysctls: map[string]string{"net.ipv4.ip_forward": "1"}},
	}
	spec, err := s.sandboxSpec(c)
	if err != nil {
		t.Fatal(err)
	}
	want := []network.PortMapping{{HostPort: 8080, PodPort: 80, Protocol: "tcp"}, {HostPort: 5353, PodPort: 53, Protocol: "udp"}}
	if diff := cmp.Diff(want, spec.Ports); diff != "" {
		t.Errorf("ports (-want +got):\n%s", diff)
	}
	if !spec.KeepAlive || spec.Net != network.Default || spec.Hostname != "web-0" || spec.Name != "ns_web" ||
		spec.Labels[LabelSandbox] != "ns/web" || spec.Labels[LabelState] != "/state" || spec.Sysctls["net.ipv4.ip_forward"] != "1" {
		t.Errorf("spec = %+v", spec)
	}
	if diff := cmp.Diff(network.DNS{Servers: []string{"10.96.0.10"}, Search: []string{"ns.svc"}, Options: []string{"ndots:5"}}, spec.DNS); diff != "" {
		t.Errorf("DNS (-want +got):\n%s", diff)
	}

	c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}
	if spec, err := s.sandboxSpec(c); err != nil || spec.Net != network.Host || len(spec.Ports) != 0 {
		t.Errorf("the host's network: %+v, %v; want net host, no forwards", spec, err)
	}
	c.Linux.SecurityContext = nil
	for _, pm := range []*runtimeapi.PortMapping{
		{Protocol: runtimeapi.Protocol_SCTP, ContainerPort: 1, HostPort: 1},
		{ContainerPort: 80, HostPort: 8081, HostIp: "127.0.0.1"},
		{ContainerPort: 0, HostPort: 8082},
	} {
		c.PortMappings = []*runtimeapi.PortMapping{pm}
		if _, err := s.sandboxSpec(c); status.Code(err) != codes.InvalidArgument {
			t.Errorf("port mapping %v: %v, want InvalidArgument", pm, err)
		}
	}
}
