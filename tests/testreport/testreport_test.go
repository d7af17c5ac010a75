package testreport_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/karman-project/karman/tests/testenv"
	"github.com/karman-project/karman/tests/testreport"
)

// goTestSample runs the real `go test -json` on testdata/sample with env
// and returns its event stream.
func goTestSample(t *testing.T, env ...string) []byte {
	t.Helper()
	goTool := testenv.RequireCommand(t, "go", "put Go's bin directory in $PATH")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "test", "-json", "-count=1", "./testdata/sample")
	cmd.Env = append(os.Environ(), append([]string{"CGO_ENABLED=0", "CI="}, env...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("go test: %v\n%s", err, stderr.String())
	}
	return out
}

func TestReportNonStrict(t *testing.T) {
	var out bytes.Buffer
	r := testreport.New(&out, false)
	if err := r.Read(bytes.NewReader(goTestSample(t, testenv.StrictEnv+"=0"))); err != nil {
		t.Fatal(err)
	}
	pkg := "tests/testreport/testdata/sample"
	want := []testreport.Skip{
		{pkg, "TestAllowed", testreport.Allowed, "allowed skip: this host's cgroup layout: no cgroup2 hierarchy"},
		{pkg, "TestMissing", testreport.Missing, "missing prerequisite: Debian's karman-sample; apt-get install karman-sample"},
		{pkg, "TestRawSkip", testreport.Other, "raw reason"},
		{pkg, "TestSub/skipped", testreport.Allowed, "allowed skip: the kernel lacks the feature: sub"},
		{pkg, "FuzzSample/seed#0", testreport.FuzzInput, "not an input of interest"},
	}
	if d := cmp.Diff(want, r.Skips); d != "" {
		t.Errorf("skips (-want +got):\n%s", d)
	}
	if len(r.Failed) != 0 || r.Err() != nil {
		t.Errorf("failed %q, err %v", r.Failed, r.Err())
	}
	if strings.Contains(out.String(), "passing noise") {
		t.Errorf("output of a passing test written:\n%s", out.String())
	}
	r.Summary()
	for _, s := range []string{
		"strict mode off): 5 skipped: 2 allowed, 1 missing prerequisites, 1 fuzz inputs, 1 other\n",
		"allowed (the allow-list",
		"  " + pkg + " TestMissing: missing prerequisite: Debian's karman-sample; apt-get install karman-sample\n",
		"  " + pkg + " TestRawSkip: raw reason\n",
	} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("summary lacks %q:\n%s", s, out.String())
		}
	}
}

// TestReportStrict: in strict mode Missing fails its test, and the report
// turns a skip outside the allow-list into an error.
func TestReportStrict(t *testing.T) {
	var out bytes.Buffer
	r := testreport.New(&out, true)
	if err := r.Read(bytes.NewReader(goTestSample(t, testenv.StrictEnv+"=1", "KARMAN_SAMPLE_FAIL=1"))); err != nil {
		t.Fatal(err)
	}
	pkg := "tests/testreport/testdata/sample"
	if d := cmp.Diff([]string{pkg + " TestMissing", pkg + " TestFails", pkg}, r.Failed); d != "" {
		t.Errorf("failed (-want +got):\n%s", d)
	}
	for _, s := range []string{"failing output", "failed on purpose", "missing prerequisite: Debian's karman-sample", "FAIL\t" + testreport.Module + pkg} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, out.String())
		}
	}
	err := r.Err()
	if err == nil || !strings.Contains(err.Error(), "1 tests skipped outside the allow-list ("+pkg+" TestRawSkip)") {
		t.Errorf("Err() = %v", err)
	}
}

// TestReportUnfinished: the output of a test that never ended (its
// binary panicked or timed out) is written when its package fails.
func TestReportUnfinished(t *testing.T) {
	stream := `{"Action":"run","Package":"m/p","Test":"TestHang"}
{"Action":"output","Package":"m/p","Test":"TestHang","Output":"=== RUN   TestHang\n"}
{"Action":"output","Package":"m/p","Test":"TestHang","Output":"panic: test timed out after 1s\n"}
not json: a line of the go command
{"Action":"output","Package":"m/p","Output":"FAIL\tm/p\t1.0s\n"}
{"Action":"fail","Package":"m/p"}
`
	var out bytes.Buffer
	r := testreport.New(&out, true)
	if err := r.Read(strings.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	want := "not json: a line of the go command\nFAIL\tm/p\t1.0s\n-- unfinished: m/p TestHang\n=== RUN   TestHang\npanic: test timed out after 1s\n"
	if out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
	if d := cmp.Diff([]string{"m/p"}, r.Failed); d != "" {
		t.Errorf("failed: %s", d)
	}
}
