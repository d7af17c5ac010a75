package stage0

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/karman-project/karman/stage1/poddir"
)

func TestCheckName(t *testing.T) {
	for name, ok := range map[string]bool{
		"web": true, "Web-1.prod_x": true, "_x": true, strings.Repeat("n", 128): true,
		"": false, "-x": false, ".x": false, "a b": false, "a\nb": false,
		"evil\n10.0.0.1 victim": false, "a\tb": false, "a/b": false, "ä": false, "a\x00": false,
		strings.Repeat("n", 129): false,
	} {
		if err := CheckName(name); (err == nil) != ok {
			t.Errorf("CheckName(%q) = %v", name, err)
		}
	}
}

func TestCheckHostname(t *testing.T) {
	for h, ok := range map[string]bool{
		"web": true, "web-1.example.org": true, "A1": true, "1a": true, strings.Repeat("h", 63): true,
		strings.Repeat("a.", 32) + "x": false, // 65 characters
		"":                             false, "-web": false, "web-": false, "a..b": false, ".a": false, "a.": false,
		"a b": false, "a\nb": false, "web_1": false, strings.Repeat("h", 64): false,
		"a.-b": false, "é": false,
	} {
		if err := CheckHostname(h); (err == nil) != ok {
			t.Errorf("CheckHostname(%q) = %v", h, err)
		}
	}
}

func TestCheckEnv(t *testing.T) {
	for kv, ok := range map[string]bool{
		"A=1": true, "A=": true, "A==b": true, "lower_case=x y": true,
		"=x": false, "=": false, "NOEQUALS": false, "A\x00B=1": false, "A=1\x00rest": false,
	} {
		if err := CheckEnv(kv); (err == nil) != ok {
			t.Errorf("CheckEnv(%q) = %v", kv, err)
		}
	}
	if err := CheckEnvVar("A=B", "c"); err == nil {
		t.Error("a name with '=' accepted")
	}
}

func TestCheckUser(t *testing.T) {
	for u, ok := range map[string]bool{
		"root": true, "0": true, "1000:1000": true, "app:staff": true, "4294967294": true, "4294967294:4294967294": true,
		"4294967295": false, "0:4294967295": false, "99999999999999999999": false,
		":0": false, "0:": false, "a b": false, "a\nb": false, "a:b:c": false, "a\x00": false,
	} {
		if err := CheckUser(u); (err == nil) != ok {
			t.Errorf("CheckUser(%q) = %v", u, err)
		}
	}
}

func TestReadUUIDFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const u = "0f3c2b1a-1111-4222-8333-444455556666"
	if got, err := ReadUUIDFile(write("ok", u+"\n")); err != nil || got != u {
		t.Errorf("ReadUUIDFile = %q, %v", got, err)
	}
	secret := "root:x:0:0:secret-hash-1234567890:/root:/bin/sh\n"
	p := write("passwd", secret)
	_, err := ReadUUIDFile(p)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "does not hold a pod UUID") {
		t.Fatalf("ReadUUIDFile(passwd) = %v", err)
	}
	if strings.Contains(err.Error(), "root:x") || strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "\n") {
		t.Errorf("the error echoes the file: %q", err)
	}
	if _, err := ReadUUIDFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestValidateRefusesFlagValues(t *testing.T) {
	base := func() PodSpec { return PodSpec{Net: "none", Apps: []AppSpec{{Image: "oci:/a"}}} }
	tests := []struct {
		name string
		edit func(*PodSpec)
		want string
	}{
		{"negative stop timeout", func(s *PodSpec) { s.StopTimeout = -time.Second }, "-1s is not a positive duration"},
		{"name with a newline", func(s *PodSpec) { s.Name = "evil\n10.0.0.1 victim" }, "name"},
		{"name with a space", func(s *PodSpec) { s.Name = "a b" }, "name"},
		{"hostname with a space", func(s *PodSpec) { s.Hostname = "a b" }, "RFC 1123"},
		{"empty env name", func(s *PodSpec) { s.Apps[0].Env = []string{"=x"} }, "name is empty"},
		{"uid -1", func(s *PodSpec) { s.Apps[0].User = "4294967295" }, "0 to 4294967294"},
		{"cpu below the quota", func(s *PodSpec) { s.Apps[0].Resources.CPUMillis = 1 }, "10 to 1000000 millicores"},
		{"pids negative", func(s *PodSpec) { s.Apps[0].Resources.PidsLimit = -1 }, "1 to 4194304"},
		{"exec with NUL", func(s *PodSpec) { s.Apps[0].Exec = "/bin/sh\x00x" }, "program"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			tc.edit(&s)
			err := s.Validate()
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want ErrInvalid saying %q", err, tc.want)
			}
		})
	}
	s := base()
	s.Name, s.Hostname = "web_1.prod", "web-1.example.org"
	if err := s.Validate(); err != nil || s.StopTimeout != 10*time.Second {
		t.Errorf("Validate = %v, stop timeout %s", err, s.StopTimeout)
	}
}

func TestParseVolume(t *testing.T) {
	for in, want := range map[string]poddir.Mount{
		"/h:/c":    {Source: "/h", Target: "/c"},
		"/h:/c:ro": {Source: "/h", Target: "/c", ReadOnly: true},
		"/h:/c:rw": {Source: "/h", Target: "/c"},
	} {
		if got, err := ParseVolume(in); err != nil || got != want {
			t.Errorf("ParseVolume(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "/h", "/h:/c:rx", "/h:/c:ro:x"} {
		if _, err := ParseVolume(bad); err == nil || !strings.Contains(err.Error(), "SRC:DST") {
			t.Errorf("ParseVolume(%q): %v", bad, err)
		}
	}
}

func TestCheckArgs(t *testing.T) {
	if err := CheckArgs([]string{"-c", "echo hi", ""}); err != nil {
		t.Error(err)
	}
	if err := CheckArgs([]string{"-c", "a\x00b"}); err == nil || !strings.Contains(err.Error(), "argument 2") {
		t.Errorf("NUL in an argument: %v", err)
	}
}

// TestSecurityOptionsRefused: what Validate refuses of the security
// options, each named.
func TestSecurityOptionsRefused(t *testing.T) {
	for _, tc := range []struct {
		app      AppSpec
		insecure bool
		want     string
	}{
		{AppSpec{GroupsPolicy: "loose"}, false, "--groups-policy"},
		{AppSpec{SupplementalGroups: []uint32{1<<32 - 1}}, false, "--group-add"},
		{AppSpec{Group: "a:b"}, false, "--group"},
		{AppSpec{MaskedPaths: []string{"proc"}}, false, "masked path"},
		{AppSpec{ReadonlyPaths: []string{"/a/"}}, false, "read-only path"},
		{AppSpec{MaskedPaths: make([]string, 257)}, false, "at most 256"},
		{AppSpec{Devices: []DeviceSpec{{HostPath: "dev/fuse"}}}, false, "--device"},
		{AppSpec{Devices: []DeviceSpec{{HostPath: "/dev/fuse", Path: "/fuse"}}}, false, "below /dev"},
		{AppSpec{Devices: []DeviceSpec{{HostPath: "/dev/fuse", Access: "rx"}}}, false, "permissions"},
		{AppSpec{SeccompProfile: "p.json"}, false, "absolute"},
		{AppSpec{SeccompProfile: "/p.json", Seccomp: "unconfined"}, false, "exclude each other"},
		{AppSpec{SeccompProfile: "/p.json"}, true, "exclude each other"},
	} {
		tc.app.Image = "127.0.0.1:5000/app"
		s := PodSpec{Apps: []AppSpec{tc.app}, Net: "none", InsecureSeccomp: tc.insecure}
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: %v, want one line saying %q", tc.app, err, tc.want)
		}
	}
	ok := PodSpec{Apps: []AppSpec{{Image: "127.0.0.1:5000/app", Group: "staff", SupplementalGroups: []uint32{5}, GroupsPolicy: GroupsStrict,
		MaskedPaths: []string{}, Devices: []DeviceSpec{{HostPath: "/dev/fuse", Path: "/dev/f", Access: "rw"}}, SeccompProfile: "/p.json"}}, Net: "none"}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid options refused: %v", err)
	}
}
