package cri

import (
	"context"
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/stage1/poddir"
)

// Image volumes (a mount whose source is an image): the image, which
// must be stored (kubelet pulls it first), is rendered in the sandbox's
// pod (stage0.AddImageVolume) and its root, or the image_sub_path below
// it, is mounted read-only; the source is resolved below that root,
// never following a link of the image out of it.

// imageVolume is one image volume of a container, in its record.
type imageVolume struct {
	Name   string `json:"name"` // stage0's volume name
	Target string `json:"target"`
	Digest string `json:"digest"`
	// root is the rendered image's root, source the mount's source
	// below it (while the container is created).
	root, source string
}

// addImageVolumes renders c's image volumes into the pod and returns c
// with them as plain read-only host mounts of their roots (for appSpec),
// and the volumes, which fixImageMounts then applies to the app's spec.
// On error nothing of them is left.
func (s *Server) addImageVolumes(ctx context.Context, podUUID, id string, c *runtimeapi.ContainerConfig) (_ *runtimeapi.ContainerConfig, _ []imageVolume, err error) {
	var vols []imageVolume
	defer func() {
		if err != nil {
			s.removeImageVolumes(context.WithoutCancel(ctx), podUUID, vols)
		}
	}()
	out := c
	for i, m := range c.GetMounts() {
		if m.GetImage().GetImage() == "" {
			continue
		}
		if !m.GetReadonly() {
			return nil, nil, invalid("mount %s: an image volume is read-only: set readonly", m.GetContainerPath())
		}
		sub := m.GetImageSubPath()
		if sub != "" && (path.IsAbs(sub) || path.Clean(sub) == ".." || strings.HasPrefix(path.Clean(sub), "../")) {
			return nil, nil, invalid("mount %s: image_sub_path %q must be a relative path inside the image", m.GetContainerPath(), sub)
		}
		d, err := s.resolveImage(m.GetImage().GetImage())
		if err != nil {
			return nil, nil, grpcError(fmt.Errorf("mount %s: %w", m.GetContainerPath(), err))
		}
		v := imageVolume{Name: fmt.Sprintf("c%s-%d", id[:12], i), Target: m.GetContainerPath(), Digest: d.String()}
		if v.root, err = s.rt.AddImageVolume(ctx, podUUID, v.Name, d); err != nil {
			return nil, nil, grpcError(fmt.Errorf("mount %s: %w", m.GetContainerPath(), err))
		}
		v.source = filepath.Join(v.root, path.Clean("/"+sub))
		vols = append(vols, v)
		if out == c {
			out = proto.Clone(c).(*runtimeapi.ContainerConfig)
		}
		om := out.Mounts[i]
		om.Image, om.ImageSubPath, om.HostPath, om.Readonly = nil, "", v.root, true
	}
	return out, vols, nil
}

// fixImageMounts points the app's mounts of image volumes at their
// sources, resolved below the images' roots.
func fixImageMounts(as *stage0.AppSpec, vols []imageVolume) {
	for i := range as.Mounts {
		for _, v := range vols {
			if as.Mounts[i].Target == v.Target {
				as.Mounts[i] = poddir.Mount{Source: v.source, SourceRoot: v.root, Target: v.Target, ReadOnly: true}
			}
		}
	}
}

// removeImageVolumes removes a container's image volumes from its pod.
func (s *Server) removeImageVolumes(ctx context.Context, podUUID string, vols []imageVolume) error {
	var first error
	for _, v := range vols {
		if err := s.rt.RemoveImageVolume(ctx, podUUID, v.Name); err != nil && first == nil {
			first = err
		}
	}
	return first
}
