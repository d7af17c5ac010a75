package tests

import (
	"os"
	"testing"

	"github.com/karman-project/karman/tests/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.CleanupBinary()
	os.Exit(code)
}
