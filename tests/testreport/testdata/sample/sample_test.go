// Package sample is run by testreport's tests with `go test -json`: one
// test of each kind of outcome.
package sample

import (
	"os"
	"testing"

	"github.com/karman-project/karman/tests/testenv"
)

func TestPasses(t *testing.T) { t.Log("passing noise") }

func TestAllowed(t *testing.T) {
	testenv.SkipAllowed(t, testenv.CgroupLayout, "no cgroup2 hierarchy")
}

func TestMissing(t *testing.T) {
	testenv.Missing(t, "Debian's karman-sample", "apt-get install karman-sample")
}

func TestRawSkip(t *testing.T) { t.Skip("raw reason") }

func TestFails(t *testing.T) {
	if os.Getenv("KARMAN_SAMPLE_FAIL") == "1" {
		t.Log("failing output")
		t.Fatal("failed on purpose")
	}
}

func TestSub(t *testing.T) {
	t.Run("skipped", func(t *testing.T) { testenv.SkipAllowed(t, testenv.KernelLacks, "sub") })
}

func FuzzSample(f *testing.F) {
	f.Add("skip me")
	f.Add("keep")
	f.Fuzz(func(t *testing.T, s string) {
		if s == "skip me" {
			t.Skip("not an input of interest")
		}
	})
}
