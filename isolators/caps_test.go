package isolators

import (
	"slices"
	"strings"
	"testing"
)

func TestAppCaps(t *testing.T) {
	got, err := AppCaps(nil, []string{"cap_chown", "NET_RAW"})
	if err != nil || slices.Contains(got, "CHOWN") || slices.Contains(got, "NET_RAW") || len(got) != len(DefaultCaps)-2 {
		t.Errorf("remove: %v, %v", got, err)
	}
	got, err = AppCaps([]string{"CAP_NET_ADMIN", "net_bind_service", "NET_ADMIN"}, nil)
	if err != nil || !slices.Equal(got, []string{"NET_ADMIN", "NET_BIND_SERVICE"}) {
		t.Errorf("retain: %v, %v", got, err)
	}
	if _, err := AppCaps([]string{"CAP_FLY"}, nil); err == nil || !strings.Contains(err.Error(), "unknown capability") {
		t.Errorf("unknown: %v", err)
	}
	if _, err := AppCaps([]string{"CHOWN"}, []string{"KILL"}); err == nil {
		t.Errorf("retain and remove together accepted")
	}
	if n, err := CapNumbers(DefaultCaps); err != nil || len(n) != 14 {
		t.Errorf("default numbers: %v, %v", n, err)
	}
	if len(AllCaps()) != 41 {
		t.Errorf("%d capabilities known, want 41", len(AllCaps()))
	}
}
