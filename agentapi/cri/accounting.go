package cri

import (
	"github.com/karman-project/karman/agentapi"
)

// Allocated is what the CRI's containers asked for, for the node's
// accounting (server.Accounting): the CPU of their requests (CPU shares,
// or else their quota) and their memory limits, from their creation until
// they are removed or their sandbox is stopped.
func (s *Server) Allocated() agentapi.Resources {
	s.mu.Lock()
	defer s.mu.Unlock()
	var r agentapi.Resources
	for _, c := range s.containers {
		if sb := s.sandboxes[c.SandboxID]; sb == nil || sb.Stopped {
			continue
		}
		res := c.currentResources()
		if res == nil {
			continue
		}
		r.CPUMillis += cpuMillis(res)
		r.MemoryBytes += max(0, res.GetMemoryLimitInBytes())
	}
	return r
}

// Pods are the UUIDs of the sandboxes not stopped (server.Accounting).
func (s *Server) Pods() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id, sb := range s.sandboxes {
		if !sb.Stopped {
			out = append(out, id)
		}
	}
	return out
}
