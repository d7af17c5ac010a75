package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/karman-project/karman/agentapi"
)

// apiAgent is an Agent with no runtime behind it, enough for requests
// refused before they reach one, and for the event log.
func apiAgent(t *testing.T) *Agent {
	t.Helper()
	ev, err := openEventLog(filepath.Join(t.TempDir(), "events.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ev.close() })
	ev.add(agentapi.Event{Type: agentapi.EventAgentStarted})
	return &Agent{events: ev, met: newMetrics(), tasks: map[string]*task{}, log: discardLogger()}
}

// call sends a request to the agent's handler and returns the status and
// the decoded error body (if any).
func call(t *testing.T, h http.Handler, method, target, body string) (int, agentapi.Error, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, err := http.NewRequestWithContext(ctx, method, srv.URL+target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the response: %v (a stream that does not end?)", method, target, err)
	}
	var e agentapi.Error
	json.Unmarshal(b, &e)
	return resp.StatusCode, e, string(b)
}

func TestDuplicateMembersAreRefused(t *testing.T) {
	h := apiAgent(t).Handler(nil)
	for _, tt := range []struct{ method, path, body, want string }{
		{"PUT", "/v1/tasks/web", `{"image":"busybox","restart":"sometimes","image":"busybox"}`, `duplicate member "image"`},
		{"PUT", "/v1/tasks/web", `{"image":"busybox","Image":"other"}`, `duplicate member "image" (as "Image"`},
		{"PUT", "/v1/tasks/web", `{"image":"busybox","resources":{"pids":1,"pids":2}}`, `duplicate member "pids"`},
		{"POST", "/v1/tasks/web/signal", `{"signal":"NOPE","signal":"HUP"}`, `duplicate member "signal"`},
		{"POST", "/v1/tasks/web/stop", `{"grace":"1s","grace":"2s"}`, `duplicate member "grace"`},
	} {
		code, e, raw := call(t, h, tt.method, tt.path, tt.body)
		if code != http.StatusBadRequest || len(e.Problems) != 1 || !strings.Contains(e.Problems[0], tt.want) {
			t.Errorf("%s %s %s: %d %s; want 400 naming %s", tt.method, tt.path, tt.body, code, raw, tt.want)
		}
	}
	// Empty bodies: refused where a body is needed, fine where optional.
	if code, e, raw := call(t, h, "PUT", "/v1/tasks/web", ""); code != http.StatusBadRequest || !strings.Contains(strings.Join(e.Problems, ""), "empty") {
		t.Errorf("PUT with no body: %d %s, want 400", code, raw)
	}
	if code, _, raw := call(t, h, "POST", "/v1/tasks/web/stop", ""); code != http.StatusNotFound {
		t.Errorf("POST stop with no body for an unknown task: %d %s, want 404", code, raw)
	}
}

func TestBooleanQueryParametersAreStrict(t *testing.T) {
	h := apiAgent(t).Handler(nil)
	// Every spelling strconv.ParseBool reads as false ends the stream
	// after the recorded events (call fails on a stream that does not end).
	for _, v := range []string{"false", "False", "FALSE", "f", "F", "0"} {
		code, _, body := call(t, h, "GET", "/v1/events?since=0&follow="+v, "")
		if code != http.StatusOK || !strings.Contains(body, `"agent-started"`) {
			t.Errorf("events follow=%s: %d %q", v, code, body)
		}
	}
	for _, target := range []string{
		"/v1/events?follow=no", "/v1/events?follow=", "/v1/events?follow=yes", "/v1/events?follow=false&follow=true",
		"/v1/tasks/web/logs?follow=nope", "/v1/tasks/web/logs?follow=on",
	} {
		code, e, raw := call(t, h, "GET", target, "")
		all := strings.Join(e.Problems, "\n")
		if code != http.StatusBadRequest || !strings.Contains(all, "follow") {
			t.Errorf("GET %s: %d %s; want 400 naming follow", target, code, raw)
		}
		if !strings.Contains(target, "&") && !strings.Contains(all, "use true or false") {
			t.Errorf("GET %s: %s; want the valid values", target, all)
		}
	}
	// A valid value gets past the parameter: the task is unknown.
	if code, _, raw := call(t, h, "GET", "/v1/tasks/web/logs?follow=True", ""); code != http.StatusNotFound {
		t.Errorf("logs of an unknown task, follow=True: %d %s, want 404", code, raw)
	}
}

func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	token := "0123456789abcdef0123456789abcdef"
	auth := authenticator([]byte(token))
	for _, tt := range []struct {
		header string
		ok     bool
	}{
		{"Bearer " + token, true},
		{"bearer " + token, true},
		{"BEARER " + token, true},
		{"bEaReR  " + token, true},
		{"Bearer " + token + "x", false},
		{"Bearer " + token[:31], false},
		{"Basic " + token, false},
		{"Bearer" + token, false},
		{"Bearer ", false},
		{"", false},
	} {
		r := httptest.NewRequest("GET", "/v1/node", nil)
		if tt.header != "" {
			r.Header.Set("Authorization", tt.header)
		}
		if err := auth(r); (err == nil) != tt.ok {
			t.Errorf("Authorization %q: %v, want accepted %v", tt.header, err, tt.ok)
		}
	}
}
