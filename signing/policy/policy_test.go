package policy

import (
	"errors"
	"strings"
	"testing"
)

var (
	idA = strings.Repeat("a", 64)
	idB = strings.Repeat("b", 64)
)

func TestParseErrorsNameTheLine(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string // substring, including file:line:col
	}{
		{"unknown top-level field", "{\n  \"version\": 1,\n  \"defualt\": {\"type\": \"reject\"}\n}", `policy.json:3:3: unknown field "defualt"`},
		{"unknown requirement field", "{\"version\": 1,\n\"scopes\": {\n  \"reg.example:5000/team\": {\"type\": \"signed\",\n     \"key\": [\"" + idA + "\"]}}}", `policy.json:4:6: scope "reg.example:5000/team": unknown field "key"`},
		{"version mismatch", `{"version": 2}`, `policy.json:1:13: version 2 is not supported`},
		{"version missing", `{"default": {"type": "reject"}}`, `no "version"`},
		{"version a string", `{"version": "1"}`, `"version" must be the number 1`},
		{"bad requirement type", "{\"version\": 1,\n \"default\": {\"type\": \"accept\"}}", `policy.json:2:22: "default": unknown requirement type "accept"`},
		{"no type", `{"version": 1, "default": {}}`, `"default": no "type"`},
		{"signed without keys", `{"version": 1, "default": {"type": "signed"}}`, `"signed" needs at least one key`},
		{"keys on reject", `{"version": 1, "default": {"type": "reject", "keys": ["` + idA + `"]}}`, `"reject" takes no keys`},
		{"bad key id", `{"version": 1, "default": {"type": "signed", "keys": ["3f2a"]}}`, `key "3f2a" is not a key ID`},
		{"duplicate key", `{"version": 1, "default": {"type": "signed", "keys": ["` + idA + `", "` + idA + `"]}}`, `listed twice`},
		{"duplicate field", `{"version": 1, "version": 1}`, `has "version" twice`},
		{"duplicate scope", `{"version": 1, "scopes": {"docker.io/x": {"type": "reject"}, "index.docker.io/x": {"type": "reject"}}}`, `is the same as scope "docker.io/x"`},
		{"scope with tag", `{"version": 1, "scopes": {"reg.example/app:1": {"type": "reject"}}}`, `not tags`},
		{"scope without host", `{"version": 1, "scopes": {"team/app": {"type": "reject"}}}`, `names no registry host`},
		{"relative layout", `{"version": 1, "scopes": {"oci:srv/images": {"type": "reject"}}}`, `clean absolute path`},
		{"syntax error", "{\"version\": 1,\n \"default\": {\"type\" \"reject\"}}", `policy.json:2:`},
		{"truncated", `{"version": 1`, `unexpected end of file`},
		{"trailing data", `{"version": 1} {}`, `after the policy object`},
		{"not an object", `[]`, `the policy must be an object`},
		{"scopes not an object", `{"version": 1, "scopes": []}`, `"scopes" must be an object`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("policy.json", []byte(tc.doc))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestParseRoundTrip(t *testing.T) {
	doc := `{"version": 1, "scopes": {
		"127.0.0.1:5000/team": {"type": "signed", "keys": ["` + idA + `", "` + idB + `"]},
		"oci:/srv/images": {"type": "insecure-accept-anything"},
		"docker-archive:/": {"type": "reject"}}}`
	p, err := Parse("policy.json", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if p.Default.Type != Reject {
		t.Errorf("default = %v, want reject when omitted", p.Default)
	}
	if len(p.Scopes) != 3 || p.Scopes[0].Name != "127.0.0.1:5000/team" || p.Scopes[2].Name != "docker-archive:/" {
		t.Fatalf("scopes = %+v (file order expected)", p.Scopes)
	}
	again, err := Parse("policy.json", p.Marshal())
	if err != nil {
		t.Fatalf("marshalled policy does not parse: %v\n%s", err, p.Marshal())
	}
	if string(again.Marshal()) != string(p.Marshal()) {
		t.Errorf("round trip changed the policy:\n%s\n%s", p.Marshal(), again.Marshal())
	}
}

func TestDecide(t *testing.T) {
	p, err := Parse("policy.json", []byte(`{"version": 1,
		"default": {"type": "reject"},
		"scopes": {
			"reg:5000": {"type": "insecure-accept-anything"},
			"reg:5000/team": {"type": "signed", "keys": ["`+idA+`"]},
			"reg:5000/team/legacy": {"type": "insecure-accept-anything"},
			"reg:5000/team/legacy/bad": {"type": "reject"},
			"docker.io/library": {"type": "signed", "keys": ["`+idB+`"]},
			"oci:/srv/images": {"type": "insecure-accept-anything"},
			"docker-archive:/": {"type": "reject"},
			"docker-archive:/srv/archives/ok.tar": {"type": "insecure-accept-anything"}
		}}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		scope     string
		wantScope string
		wantType  Type
	}{
		{"reg:5000/team/app", "reg:5000/team", Signed},
		{"reg:5000/team", "reg:5000/team", Signed},
		{"reg:5000/teamx/app", "reg:5000", InsecureAcceptAnything},
		{"reg:5000/other", "reg:5000", InsecureAcceptAnything},
		{"reg:5000/team/legacy/app", "reg:5000/team/legacy", InsecureAcceptAnything},
		{"reg:5000/team/legacy/bad", "reg:5000/team/legacy/bad", Reject},
		{"reg:5000/team/legacy/badx", "reg:5000/team/legacy", InsecureAcceptAnything},
		{"reg:50001/team/app", "", Reject},
		{"index.docker.io/library/busybox", "docker.io/library", Signed},
		{"oci:/srv/images", "oci:/srv/images", InsecureAcceptAnything},
		{"oci:/srv/images/app", "oci:/srv/images", InsecureAcceptAnything},
		{"oci:/srv/imagesx", "", Reject},
		{"docker-archive:/tmp/x.tar", "docker-archive:/", Reject},
		{"docker-archive:/srv/archives/ok.tar", "docker-archive:/srv/archives/ok.tar", InsecureAcceptAnything},
		{"other.example/app", "", Reject},
	}
	for _, tc := range tests {
		r, scope := p.Decide(tc.scope)
		if scope != tc.wantScope || r.Type != tc.wantType {
			t.Errorf("Decide(%q) = %s from %q, want %s from %q", tc.scope, r.Type, scope, tc.wantType, tc.wantScope)
		}
	}
	if r, _ := New().Decide("reg:5000/app"); r.Type != Reject {
		t.Errorf("a new policy decides %v, want reject", r)
	}
}
