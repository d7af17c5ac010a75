package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/stage1"
)

func TestParseApps(t *testing.T) {
	common := appFlags{env: []string{"ALL=1"}}
	got, err := parseApps([]string{
		"oci:/a", "--user", "app", "--volume", "/h:/c:ro", "--", "-c", "--- not a separator here",
		"---", "oci:/b", "--exec", "/bin/sh",
	}, &common)
	if err != nil {
		t.Fatal(err)
	}
	want := []stage0.AppSpec{
		{Image: "oci:/a", User: "app", Env: []string{"ALL=1"}, Mounts: []stage1.Mount{{Source: "/h", Target: "/c", ReadOnly: true}}, Args: []string{"-c", "--- not a separator here"}},
		{Image: "oci:/b", Exec: "/bin/sh", Env: []string{"ALL=1"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseApps (-want +got):\n%s", diff)
	}
	for args, wantErr := range map[string]string{
		"oci:/a stray":        "after --",
		"oci:/a ---":          "expected an image",
		"oci:/a --volume x":   "SRC:DST",
		"oci:/a --no-such":    "unknown flag",
		"oci:/a --- --exec x": "expected an image",
	} {
		if _, err := parseApps(strings.Fields(args), &appFlags{}); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("parseApps(%q) = %v, want an error saying %q", args, err, wantErr)
		}
	}
}
