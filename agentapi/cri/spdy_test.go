package cri

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"

	"github.com/karman-project/karman/stage0"
)

// spdyDial upgrades a streaming URL to SPDY with protocol, as kubelet's
// and crictl's clients do.
func spdyDial(t *testing.T, rawURL, protocol string) httpstream.Connection {
	t.Helper()
	rt, err := spdy.NewRoundTripperWithConfig(spdy.RoundTripperConfig{Proxier: func(*http.Request) (*url.URL, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Add(httpstream.HeaderProtocolVersion, protocol)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := rt.NewConnection(resp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func spdyStream(t *testing.T, conn httpstream.Connection, kv ...string) httpstream.Stream {
	t.Helper()
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	s, err := conn.CreateStream(h)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// readAll reads r to its end, in the background, bounded in time.
func readAll(t *testing.T, r io.Reader) <-chan string {
	c := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(r)
		c <- string(b)
	}()
	return c
}

func within(t *testing.T, c <-chan string, what string) string {
	t.Helper()
	select {
	case s := <-c:
		return s
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: nothing after 30 s", what)
		return ""
	}
}

// TestSPDY: Exec (stdin closed half-way: the command sees its end),
// Attach and PortForward over SPDY, the protocols kubelet uses.
func TestSPDY(t *testing.T) {
	e := newCRIEnv(t, "")
	p := newStreamPod(t, e,
		stage0.AppSpec{Name: "web", Exec: "/bin/sh", Args: []string{"-c", "mkdir -p /www && echo spdy-hello > /www/index.html && exec httpd -f -p 127.0.0.1:8081 -h /www"}},
		stage0.AppSpec{Name: "sh", Exec: "/bin/sh", StdinOnce: true})
	ctx := ctxT(t)

	// Exec: stdin to its end, stdout, stderr, the status.
	resp, err := e.rs.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "web", Cmd: []string{"sh", "-c", "tr a-z A-Z; echo oops >&2; exit 2"}, Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	conn := spdyDial(t, resp.Url, "v4.channel.k8s.io")
	errs := spdyStream(t, conn, "streamType", "error")
	stdin := spdyStream(t, conn, "streamType", "stdin")
	stdout := readAll(t, spdyStream(t, conn, "streamType", "stdout"))
	stderr := readAll(t, spdyStream(t, conn, "streamType", "stderr"))
	status := readAll(t, errs)
	io.WriteString(stdin, "hello spdy\n")
	stdin.Close() // half-close: the command reads its end
	if out, eout, st := within(t, stdout, "stdout"), within(t, stderr, "stderr"), within(t, status, "status"); out != "HELLO SPDY\n" || eout != "oops\n" || !strings.Contains(st, `"NonZeroExitCode"`) || !strings.Contains(st, `"message":"2"`) {
		t.Errorf("exec over SPDY: stdout %q stderr %q status %s", out, eout, st)
	}

	// Attach: the shell reads the session's stdin; its end (stdin_once)
	// ends the shell, and the session.
	resp2, err := e.rs.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: "sh", Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	conn = spdyDial(t, resp2.Url, "v4.channel.k8s.io")
	errs = spdyStream(t, conn, "streamType", "error")
	stdin = spdyStream(t, conn, "streamType", "stdin")
	stdout = readAll(t, spdyStream(t, conn, "streamType", "stdout"))
	stderr = readAll(t, spdyStream(t, conn, "streamType", "stderr"))
	status = readAll(t, errs)
	io.WriteString(stdin, "echo attached-$((3*3))\n")
	stdin.Close()
	if out, st := within(t, stdout, "attach stdout"), within(t, status, "attach status"); out != "attached-9\n" || strings.Contains(st, "Failure") {
		t.Errorf("attach over SPDY: stdout %q status %s", out, st)
	}

	// PortForward: a request and its answer on the data stream.
	for i := 0; ; i++ {
		r, err := e.rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: "web", Cmd: []string{"sh", "-c", "grep -q ':1F91 00000000:0000 0A' /proc/net/tcp"}})
		if err == nil && r.ExitCode == 0 {
			break
		}
		if i == 100 {
			t.Fatalf("the pod's server does not listen: %v %v", r, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp3, err := e.rs.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: p.uuid})
	if err != nil {
		t.Fatal(err)
	}
	conn = spdyDial(t, resp3.Url, "portforward.k8s.io")
	perr := readAll(t, spdyStream(t, conn, "streamType", "error", "port", "8081", "requestID", "1"))
	data := spdyStream(t, conn, "streamType", "data", "port", "8081", "requestID", "1")
	page := readAll(t, data)
	io.WriteString(data, "GET / HTTP/1.0\r\n\r\n")
	if got := within(t, page, "port forward"); !strings.HasPrefix(got, "HTTP/1.") || !strings.Contains(got, "spdy-hello\n") {
		t.Errorf("port forward over SPDY: %q", got)
	}
	conn.Close()
	if got := within(t, perr, "port forward errors"); got != "" {
		t.Errorf("port forward error stream: %q", got)
	}
}
