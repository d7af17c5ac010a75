package tests

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/karman-project/karman/tests/testenv"
	"github.com/karman-project/karman/tests/testimage"
	"github.com/karman-project/karman/tests/testregistry"
)

// criTools is where scripts/cri-tools.sh keeps critest and crictl.
const criTools = "/var/cache/karman/cri-tools-v1.37.0"

// TestCRIConformance runs the whole of critest (cri-tools v1.37.0) against
// a freshly started karman agent, offline, through scripts/conformance.sh,
// which is `make conformance`: it fails when a spec fails that
// tests/conformance/karman.known-failures does not name.
func TestCRIConformance(t *testing.T) {
	testenv.RequireRoot(t, "the CRI runtime creates namespaces, mounts and cgroups")
	testenv.SkipIfShort(t, "critest runs for minutes")
	bin := filepath.Dir(testenv.Binary(t))
	for _, b := range []string{"karman-full", "karman-stage1", "karman-testimage", "karman-lookalike"} {
		testenv.RequireFile(t, filepath.Join(bin, b), "make build (the conformance run takes its programs from "+bin+")")
	}
	for _, f := range []string{"critest", "crictl"} {
		testenv.RequireFile(t, filepath.Join(criTools, f), "scripts/setup.sh --tests (it builds critest and crictl with scripts/cri-tools.sh)")
	}
	testenv.RequireFile(t, testimage.DynamicBusybox, "scripts/setup.sh --tests (it unpacks Debian's dynamic busybox for the look-alike images)")
	testenv.RequireFile(t, testregistry.DistributionBinary, "apt-get install docker-registry")
	root, err := testenv.ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts/conformance.sh"))
	cmd.Env = append(os.Environ(), "BIN="+bin, "TMPDIR="+t.TempDir())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// The script stops what it started on SIGTERM; SIGKILL 30 s later.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	err = cmd.Run()
	t.Logf("scripts/conformance.sh:\n%s", out.String())
	if ctx.Err() != nil {
		t.Fatalf("scripts/conformance.sh did not finish in 15 minutes; critest's output: %s", filepath.Join(bin, "conformance-karman.log"))
	}
	if err != nil {
		t.Fatalf("scripts/conformance.sh: %v: a spec failed that tests/conformance/karman.known-failures does not name (UNEXPECTED above; critest's output: %s)", err, filepath.Join(bin, "conformance-karman.log"))
	}
	if !strings.Contains(out.String(), "conformance: karman: ") {
		t.Fatalf("scripts/conformance.sh printed no totals")
	}
}
