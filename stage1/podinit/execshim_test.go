package podinit

import (
	"strings"
	"testing"

	"github.com/karman-project/karman/isolators"
	"github.com/karman-project/karman/stage1/poddir"
)

func TestNeedsExecShim(t *testing.T) {
	custom := &isolators.Seccomp{Mode: isolators.SeccompRetain, Syscalls: []string{"read"}}
	unconfined := &isolators.Seccomp{Mode: isolators.SeccompUnconfined}
	for _, tc := range []struct {
		name string
		app  poddir.App
		v2   bool
		want bool
	}{
		{"default filter, v1", poddir.App{}, false, false},
		{"default filter, v2", poddir.App{}, true, true},
		{"own filter, v1", poddir.App{Seccomp: custom}, false, true},
		{"--seccomp unconfined, v2", poddir.App{Seccomp: unconfined}, true, false},
		{"--insecure-options=seccomp, v2", poddir.App{Unconfined: true}, true, false},
	} {
		if got := needsExecShim(&tc.app, tc.v2); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCheckShimRoom(t *testing.T) {
	ok := []poddir.App{{Name: "a"}, {Name: "b", Resources: poddir.Resources{PidsLimit: 8, MemoryBytes: 16 << 20}}}
	if err := poddir.CheckV2Limits(ok); err != nil {
		t.Fatal(err)
	}
	err := poddir.CheckV2Limits([]poddir.App{{Name: "a", Resources: poddir.Resources{PidsLimit: 2}}, {Name: "b", Resources: poddir.Resources{MemoryBytes: 8 << 20}}})
	if err == nil || !strings.Contains(err.Error(), "app a: --pids-limit 2") || !strings.Contains(err.Error(), "app b: --memory") {
		t.Fatalf("checkShimRoom = %v", err)
	}
}
