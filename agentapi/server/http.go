package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/karman-project/karman/agentapi"
	"github.com/karman-project/karman/internal/strictjson"
	"github.com/karman-project/karman/stage1/poddir"
)

// maxBody bounds request bodies.
const maxBody = 1 << 20

// Handler returns the agent's HTTP API. auth, when not nil, is checked
// before every request (see Listen).
func (a *Agent) Handler(auth func(*http.Request) error) http.Handler {
	mux := http.NewServeMux()
	route := func(pattern string, h func(w http.ResponseWriter, r *http.Request) error) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
			if auth != nil {
				if err := auth(r); err != nil {
					sw.Header().Set("WWW-Authenticate", `Bearer realm="karman-agent"`)
					writeError(sw, http.StatusUnauthorized, agentapi.Error{Error: err.Error()})
					a.met.observe(pattern, sw.code, time.Since(start))
					return
				}
			}
			r.Body = http.MaxBytesReader(sw, r.Body, maxBody)
			if err := h(sw, r); err != nil {
				writeErr(sw, err)
			}
			a.met.observe(pattern, sw.code, time.Since(start))
		})
	}
	for _, rt := range a.routes() {
		route(rt.pattern, rt.h)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if auth != nil && auth(r) != nil {
			writeError(w, http.StatusUnauthorized, agentapi.Error{Error: "authentication required"})
			return
		}
		writeError(w, http.StatusNotFound, agentapi.Error{Error: fmt.Sprintf("no endpoint %s %s; see GET /v1/openapi.json", r.Method, r.URL.Path)})
	})
	return mux
}

type routeDef struct {
	pattern string
	h       func(w http.ResponseWriter, r *http.Request) error
}

// routes is the API; the OpenAPI document describes each one (a test
// checks).
func (a *Agent) routes() []routeDef {
	return []routeDef{
		{"GET /v1/health", func(w http.ResponseWriter, _ *http.Request) error {
			return writeJSON(w, http.StatusOK, agentapi.Health{Status: "ok", Version: a.cfg.Version})
		}},
		{"GET /v1/openapi.json", func(w http.ResponseWriter, _ *http.Request) error {
			w.Header().Set("Content-Type", "application/json")
			_, err := w.Write(agentapi.OpenAPI)
			return err
		}},
		{"GET /v1/node", func(w http.ResponseWriter, _ *http.Request) error {
			return writeJSON(w, http.StatusOK, a.Node())
		}},
		{"GET /v1/tasks", func(w http.ResponseWriter, _ *http.Request) error {
			return writeJSON(w, http.StatusOK, a.Tasks())
		}},
		{"PUT /v1/tasks/{id}", a.putTask},
		{"GET /v1/tasks/{id}", func(w http.ResponseWriter, r *http.Request) error {
			t, err := a.Task(r.PathValue("id"))
			if err != nil {
				return err
			}
			return writeJSON(w, http.StatusOK, t)
		}},
		{"DELETE /v1/tasks/{id}", func(w http.ResponseWriter, r *http.Request) error {
			if err := a.Delete(r.Context(), r.PathValue("id")); err != nil {
				return err
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		}},
		{"POST /v1/tasks/{id}/signal", func(w http.ResponseWriter, r *http.Request) error {
			var req agentapi.SignalRequest
			if err := decode(r, &req, false); err != nil {
				return err
			}
			if err := a.Signal(r.Context(), r.PathValue("id"), req.Signal); err != nil {
				return err
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		}},
		{"POST /v1/tasks/{id}/stop", func(w http.ResponseWriter, r *http.Request) error {
			var req agentapi.StopRequest
			if err := decode(r, &req, true); err != nil {
				return err
			}
			var grace time.Duration
			if req.Grace != "" {
				d, err := time.ParseDuration(req.Grace)
				if err != nil || d < 0 {
					return &invalidError{[]string{fmt.Sprintf("grace %q: use a duration such as 5s", req.Grace)}}
				}
				grace = max(d, time.Millisecond)
			}
			t, err := a.Stop(r.Context(), r.PathValue("id"), grace)
			if err != nil {
				return err
			}
			return writeJSON(w, http.StatusOK, t)
		}},
		{"GET /v1/tasks/{id}/wait", func(w http.ResponseWriter, r *http.Request) error {
			t, err := a.Wait(r.Context(), r.PathValue("id"))
			if err != nil {
				return err
			}
			return writeJSON(w, http.StatusOK, t)
		}},
		{"GET /v1/tasks/{id}/logs", func(w http.ResponseWriter, r *http.Request) error {
			id := r.PathValue("id")
			follow, err := boolParam(r, "follow", false)
			if err != nil {
				return err
			}
			if _, err := a.Task(id); err != nil {
				return err
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusOK)
			return a.Logs(r.Context(), id, follow, flushWriter{w})
		}},
		{"GET /v1/tasks/{id}/stats", func(w http.ResponseWriter, r *http.Request) error {
			s, err := a.Stats(r.Context(), r.PathValue("id"))
			if err != nil {
				return err
			}
			return writeJSON(w, http.StatusOK, s)
		}},
		{"GET /v1/events", a.getEvents},
		{"GET /metrics", func(w http.ResponseWriter, _ *http.Request) error {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
			a.writeMetrics(w)
			return nil
		}},
	}
}

func (a *Agent) putTask(w http.ResponseWriter, r *http.Request) error {
	var spec agentapi.TaskSpec
	if err := decode(r, &spec, false); err != nil {
		return err
	}
	t, created, err := a.Launch(r.Context(), r.PathValue("id"), spec)
	if err != nil {
		return err
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	return writeJSON(w, code, t)
}

func (a *Agent) getEvents(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var since uint64
	if s := q.Get("since"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return &invalidError{[]string{fmt.Sprintf("since %q: a sequence number", s)}}
		}
		since = n
	}
	follow, err := boolParam(r, "follow", true)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriter(w)
	return a.events.stream(r.Context(), since, follow, bw, func() { http.NewResponseController(w).Flush() })
}

// boolParam reads the optional boolean query parameter name as
// strconv.ParseBool does; absent, it is def. Any other spelling is an
// invalid request, not a guess.
func boolParam(r *http.Request, name string, def bool) (bool, error) {
	vs, ok := r.URL.Query()[name]
	if !ok {
		return def, nil
	}
	if len(vs) > 1 {
		return false, &invalidError{[]string{fmt.Sprintf("query parameter %s: given %d times; give it once", name, len(vs))}}
	}
	b, err := strconv.ParseBool(vs[0])
	if err != nil {
		return false, &invalidError{[]string{fmt.Sprintf("query parameter %s=%q: use true or false (also accepted: 1, t, T, TRUE, True, 0, f, F, FALSE, False)", name, vs[0])}}
	}
	return b, nil
}

// decode reads a JSON body into v, refusing unknown fields and members
// given twice (or in two cases: encoding/json would match both to one
// field and keep the last); an empty body is accepted when optional.
func decode(r *http.Request, v any, optional bool) error {
	b, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return &bodyTooLarge{mbe.Limit}
	case err != nil:
		return &invalidError{[]string{"body: " + err.Error()}}
	case len(bytes.TrimSpace(b)) == 0:
		if optional {
			return nil
		}
		return &invalidError{[]string{"body: empty; send a JSON object"}}
	}
	if err := strictjson.Check(b); err != nil {
		if errors.Is(err, strictjson.ErrDuplicate) {
			return &invalidError{[]string{"body: " + err.Error() + ": give each member once"}}
		}
		return &invalidError{[]string{"body: " + err.Error()}}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return &invalidError{[]string{typeProblem(te)}}
		}
		return &invalidError{[]string{"body: " + err.Error()}}
	}
	return nil
}

// fieldRanges are the valid values of the request fields whose range a
// type error should repeat (a fraction, or a number too big for 64 bits).
var fieldRanges = map[string]string{
	"resources.cpuMillis":   fmt.Sprintf("use %d to %d millicores, or 0 for no limit", poddir.MinCPUMillis, poddir.MaxCPUMillis),
	"resources.memoryBytes": fmt.Sprintf("use %d to %d bytes, a multiple of the page, or 0 for no limit", poddir.MinMemoryBytes, poddir.MaxMemoryBytes),
	"resources.pids":        fmt.Sprintf("use 1 to %d, or 0 for no limit", poddir.MaxPidsLimit),
}

// typeProblem says which field of a body has a value of the wrong type,
// in the API's terms rather than Go's.
func typeProblem(te *json.UnmarshalTypeError) string {
	want := "a " + te.Type.String()
	switch te.Type.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		want = fmt.Sprintf("a whole number that fits in %d bits", te.Type.Bits())
	case reflect.String:
		want = "a string"
	case reflect.Bool:
		want = "true or false"
	case reflect.Slice, reflect.Array:
		want = "an array"
	case reflect.Map, reflect.Struct:
		want = "an object"
	}
	msg := fmt.Sprintf("%s: %s is not %s", te.Field, te.Value, want)
	if r, ok := fieldRanges[te.Field]; ok {
		msg += ": " + r
	}
	return msg
}

type bodyTooLarge struct{ limit int64 }

func (e *bodyTooLarge) Error() string {
	return fmt.Sprintf("request body over %d bytes", e.limit)
}

// writeErr maps an error class to its status.
func writeErr(w http.ResponseWriter, err error) {
	var inv *invalidError
	var big *bodyTooLarge
	switch {
	case errors.As(err, &big):
		writeError(w, http.StatusRequestEntityTooLarge, agentapi.Error{Error: err.Error()})
	case errors.As(err, &inv):
		writeError(w, http.StatusBadRequest, agentapi.Error{Error: "invalid request", Problems: inv.problems})
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, agentapi.Error{Error: err.Error()})
	case errors.Is(err, ErrConflict):
		writeError(w, http.StatusConflict, agentapi.Error{Error: err.Error()})
	case errors.Is(err, ErrLaunch):
		writeError(w, http.StatusUnprocessableEntity, agentapi.Error{Error: err.Error()})
	case errors.Is(err, context.Canceled):
		// the client went away
	default:
		writeError(w, http.StatusInternalServerError, agentapi.Error{Error: err.Error()})
	}
}

func writeError(w http.ResponseWriter, code int, e agentapi.Error) {
	if sw, ok := w.(*statusWriter); ok && sw.wrote {
		return // a streaming response already started
	}
	writeJSON(w, code, e)
}

func writeJSON(w http.ResponseWriter, code int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, err = w.Write(append(b, '\n'))
	return err
}

// statusWriter remembers the status for the metrics.
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// flushWriter flushes after every write, for followed logs.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(b []byte) (int, error) {
	n, err := f.w.Write(b)
	http.NewResponseController(f.w).Flush()
	return n, err
}

// routePaths lists the API's method and path pairs (for the OpenAPI test).
func (a *Agent) routePaths() []string {
	var out []string
	for _, r := range a.routes() {
		out = append(out, strings.ToLower(r.pattern))
	}
	return out
}
