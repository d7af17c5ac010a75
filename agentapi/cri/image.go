package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/stage0/pull"
)

// LocalPull is the PullFunc that fetches in this process with l (under
// its configuration directory's signature policy), with the request's
// credentials when it carries some.
func LocalPull(l pull.Local) PullFunc {
	return func(ctx context.Context, ref string, auth *runtimeapi.AuthConfig) (string, error) {
		if auth != nil && (auth.Username != "" || auth.Password != "" || auth.Auth != "" || auth.IdentityToken != "" || auth.RegistryToken != "") {
			l.Keychain = staticKeychain{authn.FromConfig(authn.AuthConfig{
				Username: auth.Username, Password: auth.Password, Auth: auth.Auth,
				IdentityToken: auth.IdentityToken, RegistryToken: auth.RegistryToken,
			})}
		}
		d, err := l.Fetch(ctx, ref, stage0.FetchOptions{})
		if err != nil {
			return "", err
		}
		return d.String(), nil
	}
}

// staticKeychain answers every registry with one set of credentials:
// those of the request, which names the image's registry.
type staticKeychain struct{ a authn.Authenticator }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.a, nil }

// The ImageService on the runtime's image store: an image's id is its
// manifest digest (what PullImage returns and containers report), its
// repo tags the names it was fetched by, its repo digests those names'
// repositories at its digest.

// criImage describes a stored image for the CRI; nil when it cannot be
// read.
func (s *Server) criImage(d v1.Hash) *runtimeapi.Image {
	st := s.rt.Images()
	img, err := st.Image(d)
	if err != nil {
		return nil
	}
	out := &runtimeapi.Image{Id: d.String(), Size: uint64(max(0, img.Size)), RepoTags: []string{}, RepoDigests: []string{}}
	for _, n := range img.Names {
		if strings.Contains(n, ":/") || strings.HasPrefix(n, "oci:") || strings.HasPrefix(n, "docker-archive:") {
			continue // a layout or an archive: no repository
		}
		repo, _, isDigest := strings.Cut(n, "@")
		if !isDigest {
			out.RepoTags = append(out.RepoTags, n)
			if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
				repo = repo[:i]
			}
		}
		if rd := repo + "@" + d.String(); !slices.Contains(out.RepoDigests, rd) {
			out.RepoDigests = append(out.RepoDigests, rd)
		}
	}
	slices.Sort(out.RepoTags)
	slices.Sort(out.RepoDigests)
	if _, cfg, err := st.Load(d); err == nil {
		user := cfg.Config.User
		u, _, _ := strings.Cut(user, ":")
		if n, err := strconv.ParseInt(u, 10, 64); err == nil {
			out.Uid = &runtimeapi.Int64Value{Value: n}
		} else if u != "" {
			out.Username = u
		}
	}
	return out
}

// resolveImage finds a stored image by name, id, id prefix or repo
// digest (repo@digest of an image fetched by tag).
func (s *Server) resolveImage(ref string) (v1.Hash, error) {
	st := s.rt.Images()
	d, err := st.Resolve(ref)
	if err == nil {
		return d, nil
	}
	if repo, dig, ok := strings.Cut(ref, "@"); ok {
		if dd, derr := st.Resolve(dig); derr == nil {
			if img := s.criImage(dd); img != nil && slices.Contains(img.RepoDigests, repo+"@"+dd.String()) {
				return dd, nil
			}
		}
	}
	return v1.Hash{}, err
}

// PullImage fetches an image into the store (Config.Pull) under the
// signature policy; a refused image fails with the policy's reason.
func (s *Server) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, invalid("PullImage: no image given")
	}
	if s.cfg.Pull == nil {
		return nil, status.Error(codes.Unimplemented, "PullImage: this server fetches no images")
	}
	d, err := s.cfg.Pull(ctx, ref, req.GetAuth())
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.Error(status.FromContextError(ctx.Err()).Code(), err.Error())
		}
		return nil, grpcError(fmt.Errorf("PullImage %s: %w", ref, err))
	}
	s.log.Info("cri: image pulled", "image", ref, "digest", d)
	return &runtimeapi.PullImageResponse{ImageRef: d}, nil
}

// ListImages lists the stored images with names, or the one the filter
// names.
func (s *Server) ListImages(_ context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	out := []*runtimeapi.Image{}
	if ref := req.GetFilter().GetImage().GetImage(); ref != "" {
		if d, err := s.resolveImage(ref); err == nil {
			if img := s.criImage(d); img != nil {
				out = append(out, img)
			}
		}
		return &runtimeapi.ListImagesResponse{Images: out}, nil
	}
	imgs, err := s.rt.Images().Images()
	if err != nil {
		return nil, grpcError(err)
	}
	for _, im := range imgs {
		d, err := v1.NewHash(im.Digest)
		if err != nil {
			continue
		}
		if img := s.criImage(d); img != nil {
			out = append(out, img)
		}
	}
	return &runtimeapi.ListImagesResponse{Images: out}, nil
}

// ImageStatus reports an image, or nothing (not an error) when it is not
// stored.
func (s *Server) ImageStatus(_ context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, invalid("ImageStatus: no image given")
	}
	d, err := s.resolveImage(ref)
	if err != nil {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	img := s.criImage(d)
	resp := &runtimeapi.ImageStatusResponse{Image: img}
	if req.GetVerbose() && img != nil {
		if rec, err := s.rt.Images().Image(d); err == nil {
			b, _ := json.Marshal(rec)
			resp.Info = map[string]string{"info": string(b)}
		}
	}
	return resp, nil
}

// RemoveImage removes every name of an image; its blobs go with the
// store's gc once nothing uses them. An image that is not stored is not
// an error.
func (s *Server) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, invalid("RemoveImage: no image given")
	}
	d, err := s.resolveImage(ref)
	if err != nil {
		return &runtimeapi.RemoveImageResponse{}, nil
	}
	st := s.rt.Images()
	if _, err := st.RemoveRefs(ctx, func(_ string, rd v1.Hash) bool { return rd == d }); err != nil {
		return nil, grpcError(fmt.Errorf("RemoveImage %s: %w", ref, err))
	}
	if _, err := st.GC(ctx); err != nil {
		s.log.Warn("cri: image store gc after RemoveImage", "err", err)
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}

// ImageFsInfo reports the file system use of the image store, and of the
// pods' directories (the containers' writable layers), each read at most
// every fsCacheTTL.
func (s *Server) ImageFsInfo(context.Context, *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	now := time.Now().UnixNano()
	fsUsage := func(dir string) *runtimeapi.FilesystemUsage {
		used, inodes := s.fs.usage(dir, time.Unix(0, now))
		return &runtimeapi.FilesystemUsage{Timestamp: now, FsId: &runtimeapi.FilesystemIdentifier{Mountpoint: dir},
			UsedBytes: &runtimeapi.UInt64Value{Value: used}, InodesUsed: &runtimeapi.UInt64Value{Value: inodes}}
	}
	root := s.rt.Images().Root()
	return &runtimeapi.ImageFsInfoResponse{
		ImageFilesystems:     []*runtimeapi.FilesystemUsage{fsUsage(root)},
		ContainerFilesystems: []*runtimeapi.FilesystemUsage{fsUsage(filepath.Join(filepath.Dir(root), "pods"))},
	}, nil
}
