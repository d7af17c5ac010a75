package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/karman-project/karman/agentapi"
)

// FuzzTaskSpec decodes a PUT /v1/tasks/{id} body as the handler does and
// validates it as Launch does. Refusals wrap ErrInvalid. A spec the agent
// accepts must be one that stage0 accepts too (otherwise the PUT answers
// 201 and the launch fails later), with its ports and networks carried
// over; and it must survive the agent's record (JSON) unchanged, with the
// same spec hash, so that a retried PUT after a restart is the same task.
func FuzzTaskSpec(f *testing.F) {
	for _, s := range []string{
		`{"image":"127.0.0.1:5000/app:v1"}`,
		`{"image":"127.0.0.1:5000/app","command":["/bin/sh","-c","sleep 1"],"args":["x"],"env":{"A":"1","B":""},"user":"1000:1000","workingDir":"/srv",` +
			`"resources":{"cpuMillis":250,"memoryBytes":67108864,"pids":64},"networks":["default"],"ports":[{"hostPort":8080,"containerPort":80},{"hostPort":53,"containerPort":53,"protocol":"udp"}],` +
			`"volumes":[{"source":"/srv/vol/a","target":"/data","readOnly":true}],"restart":"on-failure","labels":{"team":"a"},"stopTimeout":"30s"}`,
		`{"image":"oci:/srv/layout:v1","networks":["host"],"ports":[{"hostPort":80,"containerPort":80}]}`,
		`{"image":"x","image":"y"}`,
		`{"image":"x","Image":"y"}`,
		`{"image":"x","unknown":1}`,
		`{"image":"x","env":{"A=B":"1","":"2"},"labels":{"karman.agent/task":"other","a\nb":"c","k=v":""}}`,
		`{"image":"x","resources":{"cpuMillis":-1,"memoryBytes":1}}`,
		`{"image":"x","networks":["none","default"],"ports":[{"hostPort":0,"containerPort":70000,"protocol":"sctp"}]}`,
		`{"image":"x","networks":["a b"],"volumes":[{"source":"/srv/vol/../../etc","target":"rel"}]}`,
		`{"image":"x","stopTimeout":"-1s","restart":"sometimes","command":[""]}`,
		`{"image":"x","workingDir":"rel","user":"a\nb"}`,
		`{"image":"x","labels":{"a\nb":"c"}}`, `{"image":"x","labels":{"k=v":""}}`,
		`{"image":"x","volumes":[{"source":"/srv/vol/a\u0000b","target":"/data"}]}`,
		`{"image":"x","networks":["n:IP=10.0.0.1"]}`, `{"image":"x","networks":["\u00e9"]}`,
		`{"image":" "}`, `{"image":"x"} {}`, `[]`, ``, `null`,
	} {
		f.Add([]byte(s), "task-1")
	}
	f.Add([]byte(`{"image":"x"}`), ".hidden")
	f.Fuzz(func(t *testing.T, body []byte, id string) {
		vol := t.TempDir()
		a := &Agent{cfg: Config{VolumeDirs: []string{"/srv/vol", vol}}}
		var spec agentapi.TaskSpec
		r := httptest.NewRequest("PUT", "/v1/tasks/x", bytes.NewReader(body))
		if err := decode(r, &spec, false); err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("decode: %v does not wrap ErrInvalid", err)
			}
			return
		}
		b, err := json.Marshal(spec)
		if err != nil {
			t.Fatalf("an accepted spec does not encode: %v", err)
		}
		var again agentapi.TaskSpec
		if err := decode(httptest.NewRequest("PUT", "/v1/tasks/x", bytes.NewReader(b)), &again, false); err != nil {
			t.Fatalf("an accepted spec, encoded, is refused: %v\n%s", err, b)
		}
		if diff := cmp.Diff(spec, again, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("an accepted spec reads differently encoded again (-first +again):\n%s", diff)
		}
		if specHash(spec) != specHash(again) {
			t.Fatalf("the spec hash changes when the spec is encoded again:\n%s", b)
		}
		if !validID(id) || len(a.validate(&spec)) > 0 {
			return
		}
		ps := podSpec(id, spec, a.cfg.VolumeDirs)
		if err := ps.Validate(); err != nil {
			t.Fatalf("the agent accepts task %q with spec\n%s\nbut stage0 refuses its pod: %v", id, b, err)
		}
		if want := len(spec.Ports); ps.Net != "host" && len(ps.Ports) != want {
			t.Fatalf("the task's %d ports became %d port forwards", want, len(ps.Ports))
		}
	})
}
