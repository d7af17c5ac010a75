package cri

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/karman-project/karman/stage0"
)

// LabelSandbox is the pod label that marks a pod as a CRI sandbox; its
// value is the sandbox's name (namespace/name). LabelState names the
// state directory of the server that made it: only that server's
// recovery removes it when it finds no record of it.
const (
	LabelSandbox = "karman.cri/sandbox"
	LabelState   = "karman.cri/state"
)

// recover loads the records and reconciles them with the pods: a record
// whose pod (or app) is gone is forgotten, a CRI pod or app without a
// record (the agent was stopped between making it and recording it) is
// removed. The rest is served as before.
func (s *Server) recover(ctx context.Context) error {
	sbs, cs, bad, errs := s.store.load()
	for _, err := range errs {
		s.log.Warn("cri records: one that cannot be read is kept, and what it may describe left alone", "err", err)
	}
	pods, err := s.rt.List(ctx)
	if err != nil {
		return fmt.Errorf("cri recovery: listing pods: %w", err)
	}
	byUUID := map[string]stage0.PodInfo{}
	for _, p := range pods {
		byUUID[p.UUID] = p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range sbs {
		if _, ok := byUUID[r.ID]; !ok {
			s.log.Info("cri: forgetting a sandbox whose pod is gone", "sandbox", r.ID)
			s.store.remove("sandboxes", r.ID)
			continue
		}
		s.sandboxes[r.ID] = r
	}
	apps := map[string]bool{}    // "uuid/app"
	created := map[string]bool{} // never started
	for _, p := range pods {
		for _, a := range p.Apps {
			apps[p.UUID+"/"+a.Name] = true
			created[p.UUID+"/"+a.Name] = a.State == stage0.AppCreated
		}
	}
	recorded := map[string]bool{}
	for _, c := range cs {
		if s.sandboxes[c.SandboxID] == nil || !apps[c.SandboxID+"/"+c.App] {
			s.log.Info("cri: forgetting a container whose app is gone", "container", c.ID, "sandbox", c.SandboxID)
			s.store.remove("containers", c.ID)
			continue
		}
		s.containers[c.ID] = c
		recorded[c.SandboxID+"/"+c.App] = true
		if created[c.SandboxID+"/"+c.App] {
			// An agent stopped between app add and the log's link
			// left none: made now, before the app starts.
			if err := s.linkLog(c.SandboxID, c); err != nil {
				s.log.Warn("cri: linking a container's log", "container", c.ID, "err", err)
			}
		}
	}
	for _, p := range pods {
		if _, ok := p.Labels[LabelSandbox]; !ok || p.Labels[LabelState] != s.cfg.StateDir {
			continue // not a sandbox, or another server's
		}
		if bad["sandboxes"][p.UUID] {
			continue // its record is unreadable: not ours to judge
		}
		if s.sandboxes[p.UUID] == nil {
			s.log.Info("cri: removing a sandbox pod that was never recorded", "pod", p.UUID)
			if p.State == stage0.Running {
				s.rt.Stop(ctx, p.UUID, true)
				s.rt.Wait(ctx, p.UUID)
			}
			if err := s.rt.Remove(ctx, p.UUID); err != nil && !errors.Is(err, stage0.ErrNotFound) {
				s.log.Warn("cri: removing an unrecorded sandbox pod", "pod", p.UUID, "err", err)
			}
			continue
		}
		if p.State != stage0.Running || len(bad["containers"]) > 0 {
			continue // an unreadable container record may name any app
		}
		for _, a := range p.Apps {
			if !recorded[p.UUID+"/"+a.Name] {
				s.log.Info("cri: removing an app that was never recorded", "pod", p.UUID, "app", a.Name)
				if err := s.rt.RemoveApp(ctx, p.UUID, a.Name, true); err != nil {
					s.log.Warn("cri: removing an unrecorded app", "pod", p.UUID, "app", a.Name, "err", err)
				}
			}
		}
	}
	s.log.Info("cri: recovered", "sandboxes", len(s.sandboxes), "containers", len(s.containers))
	return nil
}

// findSandboxLocked finds a sandbox by id or unique id prefix; s.mu is
// held.
func (s *Server) findSandboxLocked(id string) (*sandboxRecord, error) {
	if id == "" {
		return nil, invalid("a sandbox id is required")
	}
	if r, ok := s.sandboxes[id]; ok {
		return r, nil
	}
	var found *sandboxRecord
	for k, r := range s.sandboxes {
		if strings.HasPrefix(k, id) {
			if found != nil {
				return nil, invalid("sandbox id %q matches several sandboxes; give more characters", id)
			}
			found = r
		}
	}
	if found == nil {
		return nil, notFound("sandbox " + id)
	}
	return found, nil
}

// findContainerLocked finds a container by id or unique id prefix; s.mu
// is held.
func (s *Server) findContainerLocked(id string) (*containerRecord, error) {
	if id == "" {
		return nil, invalid("a container id is required")
	}
	if r, ok := s.containers[id]; ok {
		return r, nil
	}
	var found *containerRecord
	for k, r := range s.containers {
		if strings.HasPrefix(k, id) {
			if found != nil {
				return nil, invalid("container id %q matches several containers; give more characters", id)
			}
			found = r
		}
	}
	if found == nil {
		return nil, notFound("container " + id)
	}
	return found, nil
}

// sandboxLock returns the lock that serializes the operations on one
// sandbox and its containers.
func (s *Server) sandboxLock(id string) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.sbLocks[id]
	if !ok {
		l = &sync.Mutex{}
		s.sbLocks[id] = l
	}
	return l
}

// lockedSandbox finds the sandbox id and takes its lock (unlock releases
// it), for the calls to which a sandbox that is not known is no error:
// sb is nil then.
func (s *Server) lockedSandbox(id string) (sb *sandboxRecord, unlock func(), err error) {
	s.mu.Lock()
	sb, err = s.findSandboxLocked(id)
	s.mu.Unlock()
	if status.Code(err) == codes.NotFound {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	l := s.sandboxLock(sb.ID)
	l.Lock()
	return sb, l.Unlock, nil
}

// lockedContainer is lockedSandbox for the container id and its sandbox:
// c is nil when the container is not known.
func (s *Server) lockedContainer(id string) (c *containerRecord, sb *sandboxRecord, unlock func(), err error) {
	c, sb, err = s.lookContainer(id)
	if status.Code(err) == codes.NotFound {
		return nil, nil, nil, nil
	}
	if err != nil {
		return nil, nil, nil, err
	}
	l := s.sandboxLock(sb.ID)
	l.Lock()
	return c, sb, l.Unlock, nil
}
