package server

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultSocket is where the agent listens by default.
const DefaultSocket = "/run/karman/agent.sock"

// ListenOptions say where and how the agent serves.
type ListenOptions struct {
	// Addr is unix:///path (or a path) or tcp://HOST:PORT.
	Addr string
	// TLS: the agent's certificate and key, and the CA that signs client
	// certificates. TCP needs the certificate and key.
	CertFile, KeyFile, ClientCAFile string
	// TokenFile holds the bearer token clients may present instead of (or
	// besides) a certificate.
	TokenFile string
}

// ErrUnauthenticatedTCP refuses a TCP listener without client
// authentication.
var ErrUnauthenticatedTCP = errors.New("refusing to serve TCP without TLS and client authentication")

// Listen opens the listener and returns it with the per-request
// authentication check (nil for a unix socket, whose permissions are the
// check: the socket is made owner-only). On TCP it requires TLS
// (--tls-cert, --tls-key) and client authentication: a client
// certificate signed by --client-ca and/or the bearer token of
// --token-file; with both, either is enough. A client certificate that
// does not verify is refused in the TLS handshake.
func Listen(o ListenOptions) (net.Listener, func(*http.Request) error, error) {
	addr := o.Addr
	if addr == "" {
		addr = "unix://" + DefaultSocket
	}
	switch {
	case strings.HasPrefix(addr, "unix://") || strings.HasPrefix(addr, "/"):
		if o.CertFile != "" || o.ClientCAFile != "" || o.TokenFile != "" {
			return nil, nil, fmt.Errorf("--listen %s: TLS and token options apply to tcp:// only (the socket's permissions guard it)", addr)
		}
		return listenUnix(strings.TrimPrefix(addr, "unix://"))
	case strings.HasPrefix(addr, "tcp://"):
		return listenTCP(strings.TrimPrefix(addr, "tcp://"), o)
	}
	return nil, nil, fmt.Errorf("--listen %q: use unix:///path/to/agent.sock or tcp://HOST:PORT", addr)
}

func listenUnix(path string) (net.Listener, func(*http.Request) error, error) {
	l, err := ListenUnix(path, "agent socket", "--listen unix://")
	return l, nil, err
}

// ListenUnix listens on the unix socket path, owner-only (0600) in an
// owner-only directory, as the agent's --listen does (see
// prepareSocketPath); the agent's other sockets (the CRI's) use it too.
// what names the socket in errors ("agent socket") and flag the option
// that sets its path ("--listen unix://").
func ListenUnix(path, what, flag string) (net.Listener, error) {
	if err := prepareSocketPath(path, what, flag); err != nil {
		return nil, err
	}
	// Created owner-only, not chmod'ed after: no moment where others may
	// connect. (The umask is process-wide; this runs before anything else.)
	old := unix.Umask(0o177)
	l, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	return l, nil
}

// prepareSocketPath makes path ready to listen on, or says why it is not.
// The path is absolute. Its directory is created owner-only (0700) if
// missing; an existing one must be a directory owned by root or by this
// user that neither group nor others can write (else they could replace
// the socket). What is at path may only be a stale socket, one that no
// process answers on, which is removed; a live socket (another agent), a
// regular file, a directory or anything else is refused, never deleted.
func prepareSocketPath(path, what, flag string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("%s%s: the socket path must be absolute, as %s%s/NAME.sock", flag, path, flag, filepath.Dir(DefaultSocket))
	}
	path = filepath.Clean(path)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%s %s: creating its directory: %w", what, path, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return fmt.Errorf("%s %s: %w", what, path, err)
	}
	switch euid := uint32(os.Geteuid()); {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("%s %s: %s is not a directory", what, path, dir)
	case st.Uid != 0 && st.Uid != euid:
		return fmt.Errorf("%s %s: its directory %s belongs to uid %d, who could replace the socket; use a directory owned by root or by this user (uid %d)", what, path, dir, st.Uid, euid)
	case st.Mode&0o022 != 0:
		return fmt.Errorf("%s %s: its directory %s is writable by group or others (mode %04o), who could replace the socket; use an owner-only directory (chmod go-w %s, or a path under %s)", what, path, dir, st.Mode&0o7777, dir, filepath.Dir(DefaultSocket))
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("%s %s: %w", what, path, err)
	case fi.Mode().Type() != os.ModeSocket:
		return fmt.Errorf("%s %s: %s is there, not a socket; it is left alone: remove it or choose another %s path", what, path, describeMode(fi.Mode()), strings.TrimSuffix(flag, " unix://"))
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s %s: another agent is serving it; stop that agent or choose another %s path", what, path, strings.TrimSuffix(flag, " unix://"))
	}
	if !errors.Is(err, unix.ECONNREFUSED) {
		return fmt.Errorf("%s %s: cannot tell whether another agent serves it (%w); remove it if none does", what, path, err)
	}
	// Stale: left by an agent that died. Replaced.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s %s: removing the stale socket: %w", what, path, err)
	}
	return nil
}

func describeMode(m os.FileMode) string {
	switch t := m.Type(); {
	case t == 0:
		return "a regular file"
	case t&os.ModeDir != 0:
		return "a directory"
	case t&os.ModeSymlink != 0:
		return "a symbolic link"
	case t&os.ModeNamedPipe != 0:
		return "a named pipe"
	case t&os.ModeDevice != 0:
		return "a device"
	}
	return "a file of mode " + m.String()
}

func listenTCP(hostport string, o ListenOptions) (net.Listener, func(*http.Request) error, error) {
	var missing []string
	if o.CertFile == "" || o.KeyFile == "" {
		missing = append(missing, "TLS (--tls-cert and --tls-key)")
	}
	if o.ClientCAFile == "" && o.TokenFile == "" {
		missing = append(missing, "client authentication (--client-ca and/or --token-file)")
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("--listen tcp://%s: %w: give %s, or serve on the owner-only unix socket", hostport, ErrUnauthenticatedTCP, strings.Join(missing, " and "))
	}
	cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	if o.ClientCAFile != "" {
		pem, err := os.ReadFile(o.ClientCAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("--client-ca %s: no PEM certificate in it", o.ClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		if o.TokenFile != "" {
			cfg.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	var token []byte
	if o.TokenFile != "" {
		b, err := os.ReadFile(o.TokenFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--token-file: %w", err)
		}
		if token = []byte(strings.TrimSpace(string(b))); len(token) < 16 {
			return nil, nil, fmt.Errorf("--token-file %s: the token has %d characters; use at least 16 random ones", o.TokenFile, len(token))
		}
	}
	l, err := net.Listen("tcp", hostport)
	if err != nil {
		return nil, nil, fmt.Errorf("--listen tcp://%s: %w", hostport, err)
	}
	return tls.NewListener(l, cfg), authenticator(token), nil
}

// authenticator checks a request on TCP: a verified client certificate,
// or (when token is not nil) the bearer token.
func authenticator(token []byte) func(*http.Request) error {
	return func(r *http.Request) error {
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
			return nil
		}
		if token != nil {
			got, ok := bearerToken(r.Header.Get("Authorization"))
			if ok && subtle.ConstantTimeCompare([]byte(got), token) == 1 {
				return nil
			}
		}
		return errors.New("authentication required: present a client certificate signed by the agent's CA or its bearer token")
	}
}

// bearerToken returns the credentials of an Authorization header of the
// Bearer scheme. The scheme's name is case-insensitive (RFC 7235 section
// 2.1): "bearer" and "BEARER" are Bearer too.
func bearerToken(h string) (string, bool) {
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	cred = strings.TrimLeft(cred, " ")
	return cred, cred != ""
}

// Serve serves the API on l until ctx ends, then shuts the server down.
// Tasks keep running.
func (a *Agent) Serve(ctx context.Context, l net.Listener, auth func(*http.Request) error) error {
	srv := &http.Server{
		Handler:           a.Handler(auth),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	return nil
}
