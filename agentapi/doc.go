// Package agentapi is the node agent: resource fingerprint and accounting,
// the authenticated task API, events, and recovery after restarts. Tasks are
// ordinary daemonless pods started through package stage0.
package agentapi
