// Package network owns pod networks: none, host, the built-in default
// network and CNI networks, port forwarding, DNS and /etc/hosts.
package network
