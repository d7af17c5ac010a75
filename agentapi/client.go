package agentapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Client calls a node agent. The zero value is not usable; use NewClient.
type Client struct {
	base  string
	http  *http.Client
	token string
}

// ClientOptions configure NewClient.
type ClientOptions struct {
	// TLS is used for https:// (tcp://) addresses: the CA to trust and the
	// client certificate to present.
	TLS *tls.Config
	// Token is sent as a bearer token.
	Token string
}

// NewClient returns a client for an agent at addr: unix:///path/to.sock
// (or a bare path), or tcp://HOST:PORT / https://HOST:PORT (always TLS).
func NewClient(addr string, o ClientOptions) (*Client, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: 64, TLSClientConfig: o.TLS}
	c := &Client{http: &http.Client{Transport: tr}, token: o.Token}
	switch {
	case strings.HasPrefix(addr, "unix://") || strings.HasPrefix(addr, "/"):
		path := strings.TrimPrefix(addr, "unix://")
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
		c.base = "http://agent"
	case strings.HasPrefix(addr, "tcp://"), strings.HasPrefix(addr, "https://"):
		u, err := url.Parse(addr)
		if err != nil {
			return nil, fmt.Errorf("agent address %q: %w", addr, err)
		}
		c.base = "https://" + u.Host
	default:
		return nil, fmt.Errorf("agent address %q: use unix:///path/to/agent.sock or tcp://HOST:PORT", addr)
	}
	return c, nil
}

// APIError is an error response of the agent.
type APIError struct {
	Status int
	Body   Error
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("agent: %d %s: %s", e.Status, http.StatusText(e.Status), e.Body.Error)
	if len(e.Body.Problems) > 0 {
		msg += " (" + strings.Join(e.Body.Problems, "; ") + ")"
	}
	return msg
}

// StatusOf returns the HTTP status of an *APIError in err's chain, or 0.
func StatusOf(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// Do sends a request with an optional JSON body and returns the response,
// which the caller closes; statuses >= 400 become *APIError.
func (c *Client) Do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		ae := &APIError{Status: resp.StatusCode}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &ae.Body) != nil || ae.Body.Error == "" {
			ae.Body.Error = strings.TrimSpace(string(b))
		}
		return nil, ae
	}
	return resp, nil
}

func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.Do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Health calls GET /v1/health.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	return h, c.call(ctx, http.MethodGet, "/v1/health", nil, &h)
}

// Node calls GET /v1/node.
func (c *Client) Node(ctx context.Context) (Node, error) {
	var n Node
	return n, c.call(ctx, http.MethodGet, "/v1/node", nil, &n)
}

func taskPath(id string, rest string) string { return "/v1/tasks/" + url.PathEscape(id) + rest }

// Launch calls PUT /v1/tasks/{id}: it returns the task once it runs (or
// ended or failed), and the existing task when one with this id and spec
// exists.
func (c *Client) Launch(ctx context.Context, id string, spec TaskSpec) (Task, error) {
	var t Task
	return t, c.call(ctx, http.MethodPut, taskPath(id, ""), spec, &t)
}

// Tasks calls GET /v1/tasks.
func (c *Client) Tasks(ctx context.Context) ([]Task, error) {
	var ts []Task
	return ts, c.call(ctx, http.MethodGet, "/v1/tasks", nil, &ts)
}

// Task calls GET /v1/tasks/{id}.
func (c *Client) Task(ctx context.Context, id string) (Task, error) {
	var t Task
	return t, c.call(ctx, http.MethodGet, taskPath(id, ""), nil, &t)
}

// Signal calls POST /v1/tasks/{id}/signal.
func (c *Client) Signal(ctx context.Context, id, signal string) error {
	return c.call(ctx, http.MethodPost, taskPath(id, "/signal"), SignalRequest{Signal: signal}, nil)
}

// Stop calls POST /v1/tasks/{id}/stop; grace "" is the task's own.
func (c *Client) Stop(ctx context.Context, id, grace string) (Task, error) {
	var t Task
	return t, c.call(ctx, http.MethodPost, taskPath(id, "/stop"), StopRequest{Grace: grace}, &t)
}

// Delete calls DELETE /v1/tasks/{id}.
func (c *Client) Delete(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, taskPath(id, ""), nil, nil)
}

// Wait calls GET /v1/tasks/{id}/wait: it returns when the task has ended.
func (c *Client) Wait(ctx context.Context, id string) (Task, error) {
	var t Task
	return t, c.call(ctx, http.MethodGet, taskPath(id, "/wait"), nil, &t)
}

// Stats calls GET /v1/tasks/{id}/stats.
func (c *Client) Stats(ctx context.Context, id string) (TaskStats, error) {
	var s TaskStats
	return s, c.call(ctx, http.MethodGet, taskPath(id, "/stats"), nil, &s)
}

// Logs calls GET /v1/tasks/{id}/logs and copies the output to w; with
// follow until the task ends or ctx ends.
func (c *Client) Logs(ctx context.Context, id string, follow bool, w io.Writer) error {
	resp, err := c.Do(ctx, http.MethodGet, taskPath(id, "/logs?follow="+strconv.FormatBool(follow)), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	return err
}

// Events calls GET /v1/events?since=SEQ and calls f for each event until
// f returns false, the stream ends (follow=false: once the recorded events
// are sent) or ctx ends.
func (c *Client) Events(ctx context.Context, since uint64, follow bool, f func(Event) bool) error {
	resp, err := c.Do(ctx, http.MethodGet, fmt.Sprintf("/v1/events?since=%d&follow=%t", since, follow), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("event stream: %w", err)
		}
		if !f(ev) {
			return nil
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}
