package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/karman-project/karman/agentapi"
)

// TestAgentRefusesBadTaskFields: through a running agent, a task whose
// fields are out of range or malformed is refused with 400 or 422 and a
// message naming the field and what it may be, and leaves nothing behind:
// no task, no pod, no pod directory.
func TestAgentRefusesBadTaskFields(t *testing.T) {
	e := newAgentEnv(t)
	e.start(t)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", e.sock)
		},
	}}
	img, _ := json.Marshal(e.image)
	task := func(fields string) string {
		if fields != "" {
			fields = ", " + fields
		}
		return fmt.Sprintf(`{"image": %s, "command": ["/bin/sleep", "1000"]%s}`, img, fields)
	}
	for _, tc := range []struct {
		name, id, body string
		want           []string // each must be in the error or a problem
	}{
		{"cpuMillis fraction", "t", task(`"resources": {"cpuMillis": 0.5}`), []string{"resources.cpuMillis", "10 to 1000000"}},
		{"cpuMillis too big", "t", task(`"resources": {"cpuMillis": 2000000}`), []string{"resources.cpuMillis", "10 to 1000000"}},
		{"cpuMillis too small", "t", task(`"resources": {"cpuMillis": 1}`), []string{"resources.cpuMillis", "10 to 1000000"}},
		{"cpuMillis overflow", "t", task(`"resources": {"cpuMillis": 1e30}`), []string{"resources.cpuMillis", "10 to 1000000"}},
		{"memoryBytes not a page multiple", "t", task(`"resources": {"memoryBytes": 8388609}`), []string{"resources.memoryBytes", "multiple of the 4096-byte page", "8388608"}},
		{"memoryBytes too small", "t", task(`"resources": {"memoryBytes": 4096}`), []string{"resources.memoryBytes", "4194304 to 1125899906842624"}},
		{"pids negative", "t", task(`"resources": {"pids": -1}`), []string{"resources.pids", "1 to 4194304"}},
		{"name with a newline", "a\nb", task(""), []string{"task id", "1 to 128 of letters"}},
		{"name with a space", "a b", task(""), []string{"task id", "1 to 128 of letters"}},
		{"env empty name", "t", task(`"env": {"": "x"}`), []string{"env", "the name is empty"}},
		{"user 4294967295", "t", task(`"user": "4294967295"`), []string{"user", "0 to 4294967294"}},
		{"stopTimeout negative", "t", task(`"stopTimeout": "-1s"`), []string{"stopTimeout", "positive duration"}},
		{"duplicate member", "t", `{"image": "x", "image": ` + string(img) + `}`, []string{"image", "give each member once"}},
		{"duplicate nested member", "t", task(`"resources": {"pids": 10, "pids": 20}`), []string{"pids", "give each member once"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPut, "http://agent/v1/tasks/"+url.PathEscape(tc.id), strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var ae agentapi.Error
			if err := json.Unmarshal(b, &ae); err != nil {
				t.Fatalf("status %d, body %q is not an error document: %v", resp.StatusCode, b, err)
			}
			msg := strings.Join(append([]string{ae.Error}, ae.Problems...), "; ")
			t.Logf("%d %s", resp.StatusCode, msg)
			if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusUnprocessableEntity {
				t.Errorf("status %d, want 400 or 422: %s", resp.StatusCode, msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("refusal %q does not say %q", msg, w)
				}
			}
		})
	}

	// Nothing is left: no task, no pod, no pod directory.
	if tasks, err := e.c.Tasks(ctxT(t, 10*time.Second)); err != nil || len(tasks) != 0 {
		t.Errorf("tasks after the refusals: %+v, %v", tasks, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.dir, "agent", "tasks")); len(ents) != 0 {
		t.Errorf("agent/tasks has %d records after the refusals", len(ents))
	}
	if r := mustSucceed(t, karman(t, e.dir, "list", "--no-legend")); strings.TrimSpace(r.Stdout) != "" {
		t.Errorf("pods after the refusals:\n%s", r.Stdout)
	}
	for _, sd := range []string{"embryo", "prepared", "run", "exited-garbage", "garbage"} {
		if ents, _ := os.ReadDir(filepath.Join(e.dir, "pods", sd)); len(ents) != 0 {
			t.Errorf("pods/%s has %d entries after the refusals", sd, len(ents))
		}
	}
}
