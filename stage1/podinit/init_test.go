package podinit

import "testing"

func TestPodExitCode(t *testing.T) {
	for _, tc := range []struct {
		codes []int
		want  int
	}{{[]int{0}, 0}, {[]int{7}, 7}, {[]int{0, 0, 0}, 0}, {[]int{0, 3, 5}, 3}, {[]int{137, 0}, 137}} {
		var apps []*appProc
		for _, c := range tc.codes {
			apps = append(apps, &appProc{code: c, exited: true})
		}
		if got := podExitCode(apps); got != tc.want {
			t.Errorf("%v: %d, want %d", tc.codes, got, tc.want)
		}
	}
}
