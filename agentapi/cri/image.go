package cri

import (
	"context"

	"github.com/google/go-containerregistry/pkg/authn"
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
