package multicall

import (
	"errors"
	"strings"
	"testing"
)

func TestFail(t *testing.T) {
	var b strings.Builder
	code := Fail(&b, errors.Join(errors.New("one"), errors.New("two")))
	if code != ExitRuntimeError || b.String() != "karman: one; two\n" {
		t.Errorf("Fail: %d %q, want %d %q", code, b.String(), ExitRuntimeError, "karman: one; two\n")
	}
}

func TestDispatchIgnoresOtherCommands(t *testing.T) {
	called := false
	tab := Table{"__x": func([]string) int { called = true; return 0 }}
	for _, args := range [][]string{nil, {"karman"}, {"karman", "run"}, {"karman", "x"}} {
		tab.Dispatch(args) // would exit if it matched
	}
	if called {
		t.Error("an entrypoint ran for a command line that does not name it")
	}
}
