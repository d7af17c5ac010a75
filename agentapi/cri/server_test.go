package cri

import (
	"os"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/tests/testenv"
)

// TestVersionStatusConfig: the server answers on its socket, which is
// owner-only, with its name, ready conditions and cgroup driver.
func TestVersionStatusConfig(t *testing.T) {
	testenv.RequireRoot(t, "the runtime's store is root's")
	e := newCRIEnv(t, "")
	ctx := ctxT(t)
	v, err := e.rs.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if v.RuntimeName != "karman" || v.RuntimeVersion != "0.0.0+test" || v.RuntimeApiVersion != "v1" {
		t.Errorf("Version = %v", v)
	}
	st, err := e.rs.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ready := map[string]bool{}
	for _, c := range st.Status.Conditions {
		ready[c.Type] = c.Status
	}
	if !ready[runtimeapi.RuntimeReady] || !ready[runtimeapi.NetworkReady] {
		t.Errorf("Status conditions %v, want RuntimeReady and NetworkReady", st.Status.Conditions)
	}
	if len(st.RuntimeHandlers) != 1 || !st.RuntimeHandlers[0].Features.GetRecursiveReadOnlyMounts() || !st.Features.GetSupplementalGroupsPolicy() {
		t.Errorf("Status features: %v, %v; want recursive read-only mounts and the supplemental groups policy", st.RuntimeHandlers, st.Features)
	}
	rc, err := e.rs.RuntimeConfig(ctx, &runtimeapi.RuntimeConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if rc.Linux.CgroupDriver != runtimeapi.CgroupDriver_CGROUPFS {
		t.Errorf("cgroup driver %v, want cgroupfs", rc.Linux.CgroupDriver)
	}
	if _, err := e.rs.UpdateRuntimeConfig(ctx, &runtimeapi.UpdateRuntimeConfigRequest{RuntimeConfig: &runtimeapi.RuntimeConfig{
		NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "10.244.0.0/24"}}}); err != nil {
		t.Errorf("UpdateRuntimeConfig: %v", err)
	}
	if _, err := e.rs.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: "no-such-sandbox"}); status.Code(err) != codes.NotFound {
		t.Errorf("UpdatePodSandboxResources of an unknown sandbox: %v, want NotFound", err)
	}
	if fi, err := os.Stat(e.sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket %s: %v, %v; want owner-only", e.sock, fi.Mode(), err)
	}
}

// TestSemanticVersion: karman's version as the kubelet can show it.
func TestSemanticVersion(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.3":            "1.2.3",
		"1.2.3-rc.1":        "1.2.3-rc.1",
		"v0.4.0-5-gab89645": "0.4.0-5-gab89645",
		"ab89645":           "0.0.0+ab89645",
		"ab89645-dirty":     "0.0.0+ab89645-dirty",
		"dev":               "0.0.0+dev",
		"":                  "0.0.0",
		"1.2":               "0.0.0+1.2",
		"x y/z":             "0.0.0+x-y-z",
	} {
		if got := semanticVersion(in); got != want {
			t.Errorf("semanticVersion(%q) = %q, want %q", in, got, want)
		}
	}
}
