package stage1

import (
	"strings"
	"testing"

	"github.com/karman-project/karman/isolators"
)

func TestNeedsExecShim(t *testing.T) {
	custom := &isolators.Seccomp{Mode: isolators.SeccompRetain, Syscalls: []string{"read"}}
	unconfined := &isolators.Seccomp{Mode: isolators.SeccompUnconfined}
	for _, tc := range []struct {
		name string
		app  App
		v2   bool
		want bool
	}{
		{"default filter, v1", App{}, false, false},
		{"default filter, v2", App{}, true, true},
		{"own filter, v1", App{Seccomp: custom}, false, true},
		{"--seccomp unconfined, v2", App{Seccomp: unconfined}, true, false},
		{"--insecure-options=seccomp, v2", App{Unconfined: true}, true, false},
	} {
		if got := needsExecShim(&tc.app, tc.v2); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCheckShimRoom(t *testing.T) {
	ok := []App{{Name: "a"}, {Name: "b", Resources: Resources{PidsLimit: 8, MemoryBytes: 16 << 20}}}
	if err := CheckV2Limits(ok); err != nil {
		t.Fatal(err)
	}
	err := CheckV2Limits([]App{{Name: "a", Resources: Resources{PidsLimit: 2}}, {Name: "b", Resources: Resources{MemoryBytes: 8 << 20}}})
	if err == nil || !strings.Contains(err.Error(), "app a: --pids-limit 2") || !strings.Contains(err.Error(), "app b: --memory") {
		t.Fatalf("checkShimRoom = %v", err)
	}
}
