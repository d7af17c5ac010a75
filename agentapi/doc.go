// Package agentapi is the node agent's API as seen by its callers: the
// JSON types of the /v1 HTTP API (nodes, task specs, tasks, events), the
// OpenAPI document that describes them, and Client, a Go client that
// cluster masters and tests use. The agent itself is package
// agentapi/server; tasks are ordinary daemonless pods started through
// package stage0, so they outlive the agent.
//
// The API in one breath: GET /v1/health and /v1/node report the node;
// PUT /v1/tasks/{id} launches a task idempotently (the caller chooses the
// id); GET /v1/tasks[/{id}], POST .../signal, POST .../stop,
// DELETE /v1/tasks/{id}, GET .../wait, .../logs and .../stats act on it;
// GET /v1/events?since=SEQ streams events as newline-delimited JSON with a
// sequence number that survives agent restarts; GET /metrics is in the
// Prometheus text format. Errors are {"error": "...", "problems": [...]}
// with 400 for invalid input, 401 without credentials, 404 for unknown
// tasks, 409 for conflicts and refused admissions.
package agentapi
