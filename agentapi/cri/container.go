package cri

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/stage1/poddir"
)

// CreateContainer adds the container's app to its sandbox's pod, not
// started, from an image already in the store (kubelet pulls first).
func (s *Server) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	c := req.GetConfig()
	if c.GetMetadata().GetName() == "" {
		return nil, invalid("CreateContainer: the container's metadata needs a name")
	}
	if c.GetImage().GetImage() == "" {
		return nil, invalid("CreateContainer %s: no image given", c.GetMetadata().GetName())
	}
	s.mu.Lock()
	sb, err := s.findSandboxLocked(req.GetPodSandboxId())
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	l := s.sandboxLock(sb.ID)
	l.Lock()
	defer l.Unlock()
	if sb.Stopped {
		return nil, status.Errorf(codes.FailedPrecondition, "CreateContainer %s: sandbox %s is stopped", c.GetMetadata().GetName(), sb.ID)
	}
	s.mu.Lock()
	for _, o := range s.containers {
		if o.SandboxID == sb.ID && o.config.GetMetadata().GetName() == c.GetMetadata().GetName() && o.config.GetMetadata().GetAttempt() == c.GetMetadata().GetAttempt() {
			s.mu.Unlock()
			return nil, status.Errorf(codes.AlreadyExists, "CreateContainer: container %s (attempt %d) exists already in sandbox %s as %s", c.GetMetadata().GetName(), c.GetMetadata().GetAttempt(), sb.ID, o.ID)
		}
	}
	s.mu.Unlock()
	d, err := s.rt.Images().Resolve(c.GetImage().GetImage())
	if err != nil {
		return nil, grpcError(fmt.Errorf("CreateContainer %s: %w", c.GetMetadata().GetName(), err))
	}
	id := newID()
	r := &containerRecord{ID: id, SandboxID: sb.ID, App: appName(c.GetMetadata().GetName(), id), Created: time.Now().UTC(),
		Image: c.GetImage().GetImage(), ImageRef: d.String(), ImageName: c.GetImage().GetUserSpecifiedImage(), config: c}
	if r.ImageName == "" {
		// As the image is known: by its first name (kubelet creates
		// from the id PullImage returned).
		if img := s.criImage(d); img != nil && len(img.RepoTags) > 0 {
			r.ImageName = img.RepoTags[0]
		}
	}
	if lp := c.GetLogPath(); lp != "" {
		if dir := sb.config.GetLogDirectory(); dir != "" {
			r.LogPath = filepath.Join(dir, lp)
		} else if filepath.IsAbs(lp) {
			r.LogPath = lp
		}
	}
	spec, vols, err := s.addImageVolumes(ctx, sb.ID, id, c)
	if err != nil {
		return nil, err
	}
	r.ImageVolumes = vols
	as, err := s.appSpec(sb, spec, r.App, d.String())
	if err != nil {
		s.removeImageVolumes(context.WithoutCancel(ctx), sb.ID, vols)
		return nil, err
	}
	fixImageMounts(&as, vols)
	// Recorded first: an agent stopped before AddApp returns finds the
	// record and the app, or the record alone (forgotten), never an app
	// it does not know.
	s.mu.Lock()
	err = s.store.saveContainer(r)
	s.mu.Unlock()
	if err != nil {
		s.removeImageVolumes(context.WithoutCancel(ctx), sb.ID, vols)
		return nil, grpcError(err)
	}
	if _, err := s.rt.AddApp(ctx, sb.ID, as, stage0.AddAppOptions{PullPolicy: "never"}); err != nil {
		s.removeImageVolumes(context.WithoutCancel(ctx), sb.ID, vols)
		s.store.remove("containers", id)
		return nil, grpcError(fmt.Errorf("CreateContainer %s: %w", c.GetMetadata().GetName(), err))
	}
	if err := s.linkLog(sb.ID, r); err != nil {
		s.rt.RemoveApp(context.WithoutCancel(ctx), sb.ID, r.App, true)
		s.removeImageVolumes(context.WithoutCancel(ctx), sb.ID, vols)
		s.store.remove("containers", id)
		return nil, grpcError(fmt.Errorf("CreateContainer %s: %w", c.GetMetadata().GetName(), err))
	}
	s.mu.Lock()
	s.containers[id] = r
	s.mu.Unlock()
	s.log.Info("cri: container created", "container", id, "sandbox", sb.ID, "app", r.App)
	return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
}

// linkLog makes the app's log in its pod (logs/APP.log, where the
// supervisor appends its CRI records) a symbolic link to the path kubelet
// asked for, so that the records land there.
func (s *Server) linkLog(podUUID string, r *containerRecord) error {
	if r.LogPath == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(r.LogPath), 0o755); err != nil {
		return fmt.Errorf("log path: %w", err)
	}
	dir, err := s.rt.PodDir(podUUID)
	if err != nil {
		return err
	}
	link := filepath.Join(dir, poddir.LogsDir, r.App+".log")
	os.Remove(link)
	if err := os.Symlink(r.LogPath, link); err != nil {
		return fmt.Errorf("log path: %w", err)
	}
	return nil
}

// newID is a container id: 32 random bytes in hex.
func newID() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// appName is the app of a container: its name made a DNS label, and the
// start of its id, so that attempts of one container never collide.
func appName(name, id string) string {
	n := strings.Map(func(c rune) rune {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			return c
		case c >= 'A' && c <= 'Z':
			return c + 'a' - 'A'
		}
		return '-'
	}, name)
	for strings.Contains(n, "--") {
		n = strings.ReplaceAll(n, "--", "-")
	}
	n = strings.Trim(n, "-")
	if len(n) > 50 {
		n = strings.Trim(n[:50], "-")
	}
	if n == "" {
		return "c-" + id[:12]
	}
	return n + "-" + id[:12]
}

// lookContainer finds a container and its sandbox.
func (s *Server) lookContainer(id string) (*containerRecord, *sandboxRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.findContainerLocked(id)
	if err != nil {
		return nil, nil, err
	}
	return c, s.sandboxes[c.SandboxID], nil
}

// StartContainer starts the container's app.
func (s *Server) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	c, sb, err := s.lookContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	l := s.sandboxLock(sb.ID)
	l.Lock()
	defer l.Unlock()
	if sb.Stopped {
		return nil, status.Errorf(codes.FailedPrecondition, "StartContainer %s: sandbox %s is stopped", c.ID, sb.ID)
	}
	ai, err := s.appInfo(ctx, c)
	if err != nil {
		return nil, grpcError(err)
	}
	if ai.State != stage0.AppCreated {
		return nil, status.Errorf(codes.FailedPrecondition, "StartContainer %s: the container is %s; a CRI container starts once (create another)", c.ID, ai.State)
	}
	if err := s.rt.StartApp(ctx, sb.ID, c.App); err != nil {
		return nil, grpcError(fmt.Errorf("StartContainer %s: %w", c.ID, err))
	}
	return &runtimeapi.StartContainerResponse{}, nil
}

// StopContainer stops the container's app: SIGTERM, SIGKILL after the
// timeout (at once for 0). A container that is unknown or not running is
// not an error.
func (s *Server) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	c, _, unlock, err := s.lockedContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if c == nil {
		return &runtimeapi.StopContainerResponse{}, nil
	}
	defer unlock()
	if err := s.stopApp(ctx, c, time.Duration(req.GetTimeout())*time.Second); err != nil {
		return nil, grpcError(fmt.Errorf("StopContainer %s: %w", c.ID, err))
	}
	return &runtimeapi.StopContainerResponse{}, nil
}

// stopApp stops a container's app if it runs.
func (s *Server) stopApp(ctx context.Context, c *containerRecord, timeout time.Duration) error {
	ai, err := s.appInfo(ctx, c)
	if err != nil || ai.State != stage0.AppRunning {
		return nil // gone, or not running: nothing to stop
	}
	_, err = s.rt.StopApp(ctx, c.SandboxID, c.App, timeout, timeout <= 0)
	if errors.Is(err, stage0.ErrState) || errors.Is(err, stage0.ErrNotFound) {
		return nil // the pod ended meanwhile
	}
	return err
}

// RemoveContainer removes the container's app from its pod (killing it
// if it runs) and its record. A container that is unknown is not an
// error.
func (s *Server) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	c, sb, unlock, err := s.lockedContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if c == nil {
		return &runtimeapi.RemoveContainerResponse{}, nil
	}
	defer unlock()
	ps, err := s.rt.State(ctx, sb.ID)
	if err == nil && ps == stage0.Running {
		err = s.rt.RemoveApp(ctx, sb.ID, c.App, true)
		if errors.Is(err, stage0.ErrState) {
			err = nil // the pod ended meanwhile: its apps go with it
		}
	} else {
		err = nil // an ended pod's apps go with the sandbox
	}
	if err != nil && !errors.Is(err, stage0.ErrNotFound) {
		return nil, grpcError(fmt.Errorf("RemoveContainer %s: %w", c.ID, err))
	}
	if err := s.removeImageVolumes(ctx, sb.ID, c.ImageVolumes); err != nil && !errors.Is(err, stage0.ErrNotFound) {
		return nil, grpcError(fmt.Errorf("RemoveContainer %s: its image volumes: %w", c.ID, err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.store.remove("containers", c.ID); err != nil {
		return nil, grpcError(err)
	}
	delete(s.containers, c.ID)
	s.log.Info("cri: container removed", "container", c.ID, "sandbox", sb.ID)
	return &runtimeapi.RemoveContainerResponse{}, nil
}

// appInfo is the container's app as its pod reports it.
func (s *Server) appInfo(ctx context.Context, c *containerRecord) (stage0.AppInfo, error) {
	apps, err := s.rt.ListApps(ctx, c.SandboxID)
	if err != nil {
		return stage0.AppInfo{}, err
	}
	for _, a := range apps {
		if a.Name == c.App {
			return a, nil
		}
	}
	return stage0.AppInfo{}, fmt.Errorf("container %s: its app %s is gone from pod %s: %w", c.ID, c.App, c.SandboxID, stage0.ErrNotFound)
}

// containerState maps an app's state.
func containerState(a stage0.AppInfo) runtimeapi.ContainerState {
	switch a.State {
	case stage0.AppCreated:
		return runtimeapi.ContainerState_CONTAINER_CREATED
	case stage0.AppRunning:
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	case stage0.AppExited:
		return runtimeapi.ContainerState_CONTAINER_EXITED
	}
	return runtimeapi.ContainerState_CONTAINER_UNKNOWN
}

// ContainerStatus reports a container from its app and its record.
func (s *Server) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	c, _, err := s.lookContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	ai, err := s.appInfo(ctx, c)
	if err != nil && !errors.Is(err, stage0.ErrNotFound) {
		return nil, grpcError(err)
	}
	if err != nil {
		ai = stage0.AppInfo{Name: c.App, State: stage0.AppExited, Reason: "its pod is gone"}
	}
	if ai.State == stage0.AppExited && ai.Finished.IsZero() {
		// Killed with its pod: it ended when the pod did.
		if pi, err := s.rt.Status(ctx, c.SandboxID); err == nil {
			ai.Finished = pi.Finished
		}
	}
	st := s.containerStatus(c, ai)
	resp := &runtimeapi.ContainerStatusResponse{Status: st}
	if req.GetVerbose() {
		resp.Info = map[string]string{"info": fmt.Sprintf(`{"pod":%q,"app":%q,"pid":%d}`, c.SandboxID, c.App, ai.PID)}
	}
	return resp, nil
}

func (s *Server) containerStatus(c *containerRecord, ai stage0.AppInfo) *runtimeapi.ContainerStatus {
	cfg := c.config
	st := &runtimeapi.ContainerStatus{
		Id: c.ID, Metadata: cfg.GetMetadata(), State: containerState(ai), CreatedAt: c.Created.UnixNano(),
		Image: c.imageSpec(), ImageRef: c.ImageRef, ImageId: c.ImageRef,
		Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(), LogPath: c.LogPath,
		Resources:  &runtimeapi.ContainerResources{Linux: c.currentResources()},
		StopSignal: cfg.GetStopSignal(),
	}
	if !ai.Started.IsZero() {
		st.StartedAt = ai.Started.UnixNano()
	}
	if st.State == runtimeapi.ContainerState_CONTAINER_EXITED {
		if !ai.Finished.IsZero() {
			st.FinishedAt = ai.Finished.UnixNano()
		} else {
			st.FinishedAt = st.StartedAt // the end is not known: no later than its start
		}
		switch {
		case ai.ExitCode != nil:
			st.ExitCode = int32(*ai.ExitCode)
		case ai.Signal != "":
			n := unix.SignalNum("SIG" + strings.TrimPrefix(ai.Signal, "SIG"))
			if n == 0 {
				n = unix.SIGKILL // a name this build does not know
			}
			st.ExitCode = 128 + int32(n)
		default:
			st.ExitCode = 137 // killed with its pod
		}
		switch {
		case strings.Contains(ai.Reason, "oom"):
			st.Reason = "OOMKilled"
		case st.ExitCode == 0:
			st.Reason = "Completed"
		default:
			st.Reason = "Error"
		}
		st.Message = ai.Reason
	}
	if dir, err := s.rt.PodDir(c.SandboxID); err == nil {
		if pd, err := poddir.Load(dir); err == nil {
			for _, a := range pd.Apps {
				if a.Name == c.App {
					u := &runtimeapi.LinuxContainerUser{Uid: int64(a.UID), Gid: int64(a.GID), SupplementalGroups: []int64{int64(a.GID)}}
					for _, g := range a.GIDs {
						if !slices.Contains(u.SupplementalGroups, int64(g)) {
							u.SupplementalGroups = append(u.SupplementalGroups, int64(g))
						}
					}
					st.User = &runtimeapi.ContainerUser{Linux: u}
				}
			}
		}
	}
	for _, m := range cfg.GetMounts() {
		sm := &runtimeapi.Mount{ContainerPath: m.GetContainerPath(), HostPath: m.GetHostPath(),
			Readonly: m.GetReadonly(), Propagation: m.GetPropagation(), SelinuxRelabel: m.GetSelinuxRelabel(),
			RecursiveReadOnly: m.GetRecursiveReadOnly(), ImageSubPath: m.GetImageSubPath()}
		if img := m.GetImage(); img.GetImage() != "" {
			sm.Image = &runtimeapi.ImageSpec{Image: img.GetImage(), UserSpecifiedImage: img.GetUserSpecifiedImage(), Annotations: img.GetAnnotations()}
			for _, v := range c.ImageVolumes {
				if v.Target == m.GetContainerPath() {
					sm.Image.ImageRef = v.Digest
				}
			}
		}
		st.Mounts = append(st.Mounts, sm)
	}
	return st
}

// ListContainers lists the containers, filtered by id (prefix), state,
// sandbox and labels.
func (s *Server) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	f := req.GetFilter()
	cs := s.filterContainers(f.GetId(), f.GetPodSandboxId(), f.GetLabelSelector())
	apps := s.appsOf(ctx, cs)
	out := []*runtimeapi.Container{}
	for _, c := range cs {
		ai, ok := apps[c.SandboxID+"/"+c.App]
		if !ok {
			ai = stage0.AppInfo{State: stage0.AppExited}
		}
		state := containerState(ai)
		if f.GetState() != nil && f.GetState().GetState() != state {
			continue
		}
		cfg := c.config
		out = append(out, &runtimeapi.Container{Id: c.ID, PodSandboxId: c.SandboxID, Metadata: cfg.GetMetadata(),
			Image: c.imageSpec(), ImageRef: c.ImageRef, ImageId: c.ImageRef, State: state, CreatedAt: c.Created.UnixNano(),
			Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations()})
	}
	slices.SortFunc(out, func(a, b *runtimeapi.Container) int { return int(max(-1, min(1, a.CreatedAt-b.CreatedAt))) })
	return &runtimeapi.ListContainersResponse{Containers: out}, nil
}

// filterContainers are the containers whose id starts with id, of the
// sandbox whose id starts with sandbox, with the labels sel.
func (s *Server) filterContainers(id, sandbox string, sel map[string]string) []*containerRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*containerRecord
	for cid, c := range s.containers {
		if id != "" && !strings.HasPrefix(cid, id) || sandbox != "" && !strings.HasPrefix(c.SandboxID, sandbox) {
			continue
		}
		if !matchLabels(c.config.GetLabels(), sel) {
			continue
		}
		out = append(out, c)
	}
	return out
}

// appsOf reads the apps of the containers' pods, once per pod, by
// "uuid/app".
func (s *Server) appsOf(ctx context.Context, cs []*containerRecord) map[string]stage0.AppInfo {
	out := map[string]stage0.AppInfo{}
	seen := map[string]bool{}
	for _, c := range cs {
		if seen[c.SandboxID] {
			continue
		}
		seen[c.SandboxID] = true
		apps, err := s.rt.ListApps(ctx, c.SandboxID)
		if err != nil {
			continue
		}
		for _, a := range apps {
			out[c.SandboxID+"/"+a.Name] = a
		}
	}
	return out
}

// imageSpec is the image a container reports: by the name it is known by
// (ImageName), with what the request said of it.
func (c *containerRecord) imageSpec() *runtimeapi.ImageSpec {
	img := c.config.GetImage()
	name := c.ImageName
	if name == "" {
		name = img.GetImage()
	}
	return &runtimeapi.ImageSpec{Image: name, Annotations: img.GetAnnotations(), UserSpecifiedImage: img.GetUserSpecifiedImage(), RuntimeHandler: img.GetRuntimeHandler()}
}
