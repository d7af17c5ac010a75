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

func TestParseLimits(t *testing.T) {
	for in, want := range map[string]int64{"4096": 4096, "64k": 64 << 10, "256M": 256 << 20, "1G": 1 << 30, "2Gi": 2 << 30, "512mb": 512 << 20} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "0", "1T", "lots", "9999999999G"} {
		if _, err := parseBytes(bad); err == nil {
			t.Errorf("parseBytes(%q) accepted", bad)
		}
	}
	for in, want := range map[string]int64{"500m": 500, "1": 1000, "1.5": 1500, "0.25": 250} {
		if got, err := parseMillicores(in); err != nil || got != want {
			t.Errorf("parseMillicores(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "abc", "5xm"} {
		if _, err := parseMillicores(bad); err == nil {
			t.Errorf("parseMillicores(%q) accepted", bad)
		}
	}
}
