package isolators

import (
	"slices"
	"strings"
	"testing"
)

func TestAppCaps(t *testing.T) {
	got, err := AppCaps(nil, []string{"cap_chown", "NET_RAW"}, false)
	if err != nil || slices.Contains(got, "CHOWN") || slices.Contains(got, "NET_RAW") || len(got) != len(DefaultCaps)-2 {
		t.Errorf("remove: %v, %v", got, err)
	}
	got, err = AppCaps([]string{"CAP_NET_ADMIN", "net_bind_service", "NET_ADMIN"}, nil, false)
	if err != nil || !slices.Equal(got, []string{"NET_ADMIN", "NET_BIND_SERVICE"}) {
		t.Errorf("retain: %v, %v", got, err)
	}
	if _, err := AppCaps([]string{"CAP_FLY"}, nil, false); err == nil || !strings.Contains(err.Error(), "unknown capability") {
		t.Errorf("unknown: %v", err)
	}
	if _, err := AppCaps([]string{"CHOWN"}, []string{"KILL"}, false); err == nil {
		t.Errorf("retain and remove together accepted")
	}
	// On the host's network the default set has no NET_RAW, unless
	// retained by name.
	got, err = AppCaps(nil, nil, true)
	if err != nil || slices.Contains(got, "NET_RAW") || len(got) != len(DefaultCaps)-1 {
		t.Errorf("host network: %v, %v", got, err)
	}
	got, err = AppCaps(nil, []string{"chown"}, true)
	if err != nil || slices.Contains(got, "NET_RAW") || slices.Contains(got, "CHOWN") || len(got) != len(DefaultCaps)-2 {
		t.Errorf("host network, remove: %v, %v", got, err)
	}
	got, err = AppCaps([]string{"CAP_NET_RAW"}, nil, true)
	if err != nil || !slices.Equal(got, []string{"NET_RAW"}) {
		t.Errorf("host network, retain: %v, %v", got, err)
	}
	if n, err := CapNumbers(DefaultCaps); err != nil || len(n) != 14 {
		t.Errorf("default numbers: %v, %v", n, err)
	}
	if len(AllCaps()) != 41 {
		t.Errorf("%d capabilities known, want 41", len(AllCaps()))
	}
}

func TestCheckSysctl(t *testing.T) {
	for _, ok := range []string{"kernel.shmmax", "kernel.msgmax", "fs.mqueue.msg_max", "net.ipv4.ip_forward", "kernel.sem"} {
		if err := CheckSysctl(ok, false); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"kernel.panic", "vm.swappiness", "kernel.shmmaxx", "kernel.shm", "net/../../kernel", "", "kernel.sysrq"} {
		if err := CheckSysctl(bad, false); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := CheckSysctl("net.ipv4.ip_forward", true); err == nil || !strings.Contains(err.Error(), "--net=host") {
		t.Errorf("net.* with host network: %v", err)
	}
	if p := SysctlPath("net.ipv4.ip_forward"); p != "/proc/sys/net/ipv4/ip_forward" {
		t.Errorf("path %s", p)
	}
}
