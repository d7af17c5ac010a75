package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/stage1/poddir"
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
		{Image: "oci:/a", User: "app", Env: []string{"ALL=1"}, Mounts: []poddir.Mount{{Source: "/h", Target: "/c", ReadOnly: true}}, Args: []string{"-c", "--- not a separator here"}},
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

// TestFlagsRefuseWhatWouldVanish: a flag given a value that would
// silently mean something else (an empty program, a CPU amount below a
// millicore) is refused, naming what to give.
func TestFlagsRefuseWhatWouldVanish(t *testing.T) {
	for args, wantErr := range map[string][]string{
		"--exec=":              {"--exec is empty"},
		"--user=":              {"--user is empty"},
		"--cpu=0.0001":         {"--cpu", "from 1m to 1000 cores"},
		"--cpu=NaN":            {"--cpu", "from 1m to 1000 cores"},
		"--memory=-1":          {"--memory", "1048576G"},
		"--cpu-shares=-1":      {"--cpu-shares", "2 to 262144"},
		"--oom-score-adj=high": {"-1000 to 1000"},
		"--pid=":               {"--pid is empty"},
		"--pid=host":           {"--pid", "pod", "app"},
	} {
		_, err := parseApps(strings.Fields("oci:/a "+args), &appFlags{})
		if err == nil {
			t.Errorf("%s accepted", args)
			continue
		}
		for _, w := range wantErr {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", args, err, w)
			}
		}
	}
}

func TestStopTimeoutRefused(t *testing.T) {
	for _, d := range []string{"-1s", "0s"} {
		cmd := &cobra.Command{}
		var f podFlags
		f.register(cmd)
		if err := cmd.Flags().Parse([]string{"--stop-timeout", d}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.spec([]string{"oci:/a"}); err == nil || !strings.Contains(err.Error(), "--stop-timeout") {
			t.Errorf("--stop-timeout %s: %v", d, err)
		}
	}
}

// TestStatusOrder: status prints its lines in one order, whatever the
// run (it once ranged over a map).
func TestStatusOrder(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	code := 0
	info := stage0.PodInfo{UUID: "u", State: "exited", Name: "n", Created: t0, Started: t0.Add(time.Second), Finished: t0.Add(2 * time.Second), ExitCode: &code}
	want := "uuid=u\nstate=exited\nname=n\ncreated=2026-12-07T10:00:00Z\nstarted=2026-12-07T10:00:01Z\nfinished=2026-12-07T10:00:02Z\nexit-code=0\n"
	for range 20 {
		var b strings.Builder
		writeStatus(&b, info)
		if b.String() != want {
			t.Fatalf("status:\n%s\nwant:\n%s", b.String(), want)
		}
	}
}
