package stage0

import "testing"

func TestCheckCgroupParent(t *testing.T) {
	for p, ok := range map[string]bool{
		"/kubepods/burstable/pod1234": true, "/karman": true, "/a_b-c.d/e": true,
		"": false, "/": false, "kubepods.slice": false, "/a/../b": false, "/a/": false, "/a//b": false,
		"/a/.hidden": false, "/a b": false, "/a\nb": false,
	} {
		if err := CheckCgroupParent(p); (err == nil) != ok {
			t.Errorf("CheckCgroupParent(%q) = %v, want ok %v", p, err, ok)
		}
	}
}
