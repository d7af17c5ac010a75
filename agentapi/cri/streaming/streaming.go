package streaming

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	criStreaming "k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/klog/v2"
	utilexec "k8s.io/utils/exec"

	"github.com/karman-project/karman/stage0"
)

// Runtime is what the streams run on: *stage0.Runtime's calls, by
// karman's pod UUID and app name.
type Runtime interface {
	Enter(ctx context.Context, uuid string, o stage0.EnterOptions) (int, error)
	Attach(ctx context.Context, uuid string, o stage0.AttachOptions) error
	PortForward(ctx context.Context, uuid string, port int, stream io.ReadWriteCloser) error
}

var _ Runtime = (*stage0.Runtime)(nil)

// IDs maps the CRI's ids to karman's: a running container to its pod and
// app, a sandbox to its pod. Its errors end the stream, which reports
// them.
type IDs interface {
	Container(ctx context.Context, id string) (uuid, app string, err error)
	Sandbox(ctx context.Context, id string) (uuid string, err error)
}

// Config is how the server listens.
type Config struct {
	// Addr is a loopback host:port; DefaultAddr when empty (port 0: any
	// free port).
	Addr string
	// StreamIdleTimeout ends a stream idle that long (default 4 h, as
	// kubelet's); StreamCreationTimeout bounds the SPDY stream set-up.
	StreamIdleTimeout, StreamCreationTimeout time.Duration
}

// DefaultAddr is where the server listens unless told.
const DefaultAddr = "127.0.0.1:0"

// Server is the streaming server.
type Server struct {
	cfg  Config
	rt   Runtime
	ids  IDs
	log  *slog.Logger
	cri  criStreaming.Server
	http *http.Server
	ln   net.Listener
}

// New returns a server that runs streams on rt, with ids for the CRI's
// ids; it listens once started. A nil log discards.
func New(cfg Config, rt Runtime, ids IDs, log *slog.Logger) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("streaming address %q: %w; give HOST:PORT, e.g. %s", cfg.Addr, err, DefaultAddr)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("streaming address %q is not a loopback address: the streaming server has no authentication of its own; use 127.0.0.1:PORT", cfg.Addr)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, rt: rt, ids: ids, log: log}, nil
}

// Start listens and serves in the background; the URLs the Get calls
// return carry the address it listens on. The library's own records
// (klog, process-wide) go to the server's logger from then on.
func (s *Server) Start() error {
	klog.SetSlogLogger(s.log.With("src", "cri-streaming"))
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("streaming server: %w", err)
	}
	c := criStreaming.DefaultConfig
	c.Addr = ln.Addr().String()
	c.BaseURL = &url.URL{Scheme: "http", Host: c.Addr}
	if s.cfg.StreamIdleTimeout > 0 {
		c.StreamIdleTimeout = s.cfg.StreamIdleTimeout
	}
	if s.cfg.StreamCreationTimeout > 0 {
		c.StreamCreationTimeout = s.cfg.StreamCreationTimeout
	}
	cri, err := criStreaming.NewServer(c, adapter{s})
	if err != nil {
		ln.Close()
		return fmt.Errorf("streaming server: %w", err)
	}
	s.cri, s.ln = cri, ln
	s.http = &http.Server{Handler: cri, ReadHeaderTimeout: 30 * time.Second}
	go func() {
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Warn("streaming server", "err", err)
		}
	}()
	s.log.Debug("streaming server listening", "addr", c.Addr)
	return nil
}

// Addr is the address the server listens on, once started.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Close stops the server and ends the streams it serves.
func (s *Server) Close() error {
	if s.http == nil {
		return nil
	}
	return s.http.Close()
}

var errNotStarted = errors.New("the streaming server is not started")

// GetExec returns the one-time URL of an exec request.
func (s *Server) GetExec(req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if s.cri == nil {
		return nil, errNotStarted
	}
	return s.cri.GetExec(req)
}

// GetAttach returns the one-time URL of an attach request.
func (s *Server) GetAttach(req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	if s.cri == nil {
		return nil, errNotStarted
	}
	return s.cri.GetAttach(req)
}

// GetPortForward returns the one-time URL of a port forward request.
func (s *Server) GetPortForward(req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	if s.cri == nil {
		return nil, errNotStarted
	}
	return s.cri.GetPortForward(req)
}

// adapter is the cri-streaming Runtime over Runtime and IDs.
type adapter struct{ s *Server }

var _ criStreaming.Runtime = adapter{}

func (a adapter) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	uuid, app, err := a.s.ids.Container(ctx, id)
	if err != nil {
		return err
	}
	o := stage0.EnterOptions{App: app, Args: cmd, TTY: tty, Resize: termSizes(ctx, resize)}
	// Nil interfaces stay nil: no such stream.
	if in != nil {
		o.Stdin = in
	}
	if out != nil {
		o.Stdout = out
	}
	if errw != nil && !tty {
		o.Stderr = errw
	}
	code, err := a.s.rt.Enter(ctx, uuid, o)
	if err != nil {
		return err
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command %q in container %s exited with status %d", cmd, id, code), Code: code}
	}
	return nil
}

func (a adapter) Attach(ctx context.Context, id string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	uuid, app, err := a.s.ids.Container(ctx, id)
	if err != nil {
		return err
	}
	o := stage0.AttachOptions{App: app, Resize: termSizes(ctx, resize)}
	if in != nil {
		o.Stdin = in
	}
	if out != nil {
		o.Stdout = out
	}
	if errw != nil {
		o.Stderr = errw
	}
	if err := a.s.rt.Attach(ctx, uuid, o); err != nil && ctx.Err() == nil {
		return err
	}
	return nil // the app's output ended, or the client left
}

func (a adapter) PortForward(ctx context.Context, id string, port int32, stream io.ReadWriteCloser) error {
	uuid, err := a.s.ids.Sandbox(ctx, id)
	if err != nil {
		return err
	}
	return a.s.rt.PortForward(ctx, uuid, int(port), stream)
}

// termSizes turns the client's resize events into karman's, until ctx
// is done or the events end.
func termSizes(ctx context.Context, in <-chan remotecommand.TerminalSize) <-chan stage0.TermSize {
	if in == nil {
		return nil
	}
	out := make(chan stage0.TermSize, 1)
	go func() {
		defer close(out)
		for {
			select {
			case s, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- stage0.TermSize{Rows: s.Height, Cols: s.Width}:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
