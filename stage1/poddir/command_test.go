package poddir

import (
	"reflect"
	"testing"
)

func TestSupervisorArgs(t *testing.T) {
	for _, tc := range []struct {
		debug bool
		fd    int
	}{{false, 3}, {true, 7}} {
		args := SupervisorArgs("/pods/x", tc.fd, tc.debug)
		f, err := ParseSupervisorArgs(args[2:])
		if err != nil || !reflect.DeepEqual(f, SupervisorFlags{PodDir: "/pods/x", LockFD: tc.fd, Debug: tc.debug}) {
			t.Errorf("%q parsed as %+v, %v", args, f, err)
		}
	}
	for _, bad := range [][]string{{}, {"--lock-fd=x", "/p"}, {"--lock-fd=1", "/p"}, {"--nope", "/p"}, {"/p", "/q"},
		{"--init=42,9", "/p"}, {"--resumed", "/p"}} {
		if _, err := ParseSupervisorArgs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
