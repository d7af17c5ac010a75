package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/karman-project/karman/agentapi"
)

// Heartbeat timing: the default interval, and the back-off after
// failures (doubling from minBackoff up to maxBackoff, with jitter).
const (
	defaultHeartbeat = 10 * time.Second
	minBackoff       = time.Second
	maxBackoff       = time.Minute
)

// heartbeat registers the node with the master and keeps sending it the
// node document (PUT {master}/v1/nodes/{id}) until ctx ends.
func (a *Agent) heartbeat(ctx context.Context) {
	client := &http.Client{Timeout: 10 * time.Second}
	interval, backoff := defaultHeartbeat, minBackoff
	registered := false
	for {
		next, err := a.register(ctx, client)
		wait := interval
		if err != nil {
			a.log.Warn("master registration", "master", a.cfg.Master, "err", err, "retry in", backoff)
			wait = backoff + time.Duration(rand.Int64N(int64(backoff)/4+1))
			backoff = min(2*backoff, maxBackoff)
		} else {
			if !registered {
				a.log.Info("registered with the master", "master", a.cfg.Master)
			}
			registered, backoff = true, minBackoff
			if next > 0 {
				interval = next
			}
			wait = interval
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// register sends one registration and returns the interval the master
// asks for (0: unchanged).
func (a *Agent) register(ctx context.Context, c *http.Client) (time.Duration, error) {
	b, err := json.Marshal(agentapi.Registration{Node: a.Node(), Endpoint: a.cfg.Endpoint})
	if err != nil {
		return 0, err
	}
	u := strings.TrimSuffix(a.cfg.Master, "/") + "/v1/nodes/" + url.PathEscape(a.ident.ID)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return 0, fmt.Errorf("master answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var rr agentapi.RegistrationReply
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &rr); err != nil {
			return 0, fmt.Errorf("master's reply: %w", err)
		}
	}
	return time.Duration(rr.HeartbeatSeconds) * time.Second, nil
}
