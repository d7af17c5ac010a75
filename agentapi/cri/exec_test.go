package cri

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/stage0"
	"github.com/karman-project/karman/tests/testenv"
	"github.com/karman-project/karman/tests/testimage"
)

// streamPod is a sandbox's pod with running apps recorded as containers
// of the server, made through the stage0 library.
type streamPod struct {
	uuid string
}

// newStreamPod runs a pod of no apps (as RunPodSandbox does), adds and
// starts one app per spec, and records them as the sandbox and
// containers ids (the app names).
func newStreamPod(t *testing.T, e *criEnv, apps ...stage0.AppSpec) streamPod {
	t.Helper()
	testenv.RequireRoot(t, "pods need namespaces, mounts and overlayfs")
	testimage.Require(t)
	layout := filepath.Join(t.TempDir(), "layout")
	if _, err := testimage.WriteLayout(layout, "t", testimage.Must(t)(testimage.Busybox(testimage.Options{}))); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	ref := "oci:" + layout + ":t"
	if _, err := e.srv.cfg.Pull(ctx, ref, nil); err != nil {
		t.Fatal(err)
	}
	uuid, _, err := e.rt.Run(ctx, stage0.PodSpec{Net: "none", KeepAlive: true, InsecureImage: true}, stage0.RunOptions{Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		e.rt.Stop(ctx, uuid, true)
		e.rt.Wait(ctx, uuid)
		e.rt.ForceRemove(ctx, uuid)
	})
	if _, err := e.rt.WaitStarted(ctx, uuid); err != nil {
		t.Fatal(err)
	}
	e.srv.mu.Lock()
	e.srv.sandboxes[uuid] = &sandboxRecord{ID: uuid}
	e.srv.mu.Unlock()
	for _, as := range apps {
		as.Image = ref
		name, err := e.rt.AddApp(ctx, uuid, as, stage0.AddAppOptions{InsecureImage: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.rt.StartApp(ctx, uuid, name); err != nil {
			t.Fatal(err)
		}
		e.srv.mu.Lock()
		e.srv.containers[name] = &containerRecord{ID: name, SandboxID: uuid, App: name}
		e.srv.mu.Unlock()
	}
	return streamPod{uuid: uuid}
}

// TestExecSync: output, status, the container's environment, a timeout
// that kills the command, unknown containers.
func TestExecSync(t *testing.T) {
	e := newCRIEnv(t, "")
	newStreamPod(t, e, stage0.AppSpec{Name: "c1", Exec: "/bin/sleep", Args: []string{"1000"}, Env: []string{"WHO=c1"}})
	ctx := ctxT(t)
	r, err := e.rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: "c1", Cmd: []string{"sh", "-c", "echo out $WHO; echo err >&2; exit 3"}})
	if err != nil || string(r.Stdout) != "out c1\n" || string(r.Stderr) != "err\n" || r.ExitCode != 3 {
		t.Errorf("ExecSync: %v %v", r, err)
	}
	_, err = e.rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: "c1", Cmd: []string{"sleep", "4321"}, Timeout: 1})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("ExecSync past its timeout: %v", err)
	}
	// The timed-out command is gone.
	r, err = e.rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: "c1", Cmd: []string{"sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' ' | grep -c 'sleep 432[1]' || true"}})
	if err != nil || strings.TrimSpace(string(r.Stdout)) != "0" {
		t.Errorf("after the timeout: %v %v", r, err)
	}
	if _, err := e.rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: "nosuch", Cmd: []string{"true"}}); status.Code(err) != codes.NotFound {
		t.Errorf("ExecSync in an unknown container: %v", err)
	}
	if _, err := e.rs.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "nosuch", Cmd: []string{"true"}, Stdout: true}); status.Code(err) != codes.NotFound {
		t.Errorf("Exec in an unknown container: %v", err)
	}
	if _, err := e.rs.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: "nosuch"}); status.Code(err) != codes.NotFound {
		t.Errorf("PortForward to an unknown sandbox: %v", err)
	}
}

// wsDial connects to a streaming URL with the websocket channel protocol
// (v4.channel.k8s.io): every message's first byte is its channel.
func wsDial(t *testing.T, rawURL string) *websocket.Conn {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u.Host, "127.0.0.1:") {
		t.Errorf("streaming URL %s is not on loopback", rawURL)
	}
	u.Scheme = "ws"
	d := websocket.Dialer{Subprotocols: []string{"v4.channel.k8s.io"}, HandshakeTimeout: 10 * time.Second}
	c, resp, err := d.Dial(u.String(), nil)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", u, err, resp)
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	return c
}

// wsRead reads messages until the error channel's status (exec), or the
// connection's end, and returns what came on each channel.
func wsRead(t *testing.T, c *websocket.Conn, until func(map[byte]string) bool) map[byte]string {
	t.Helper()
	got := map[byte]string{}
	for {
		_, m, err := c.ReadMessage()
		if err != nil {
			return got
		}
		if len(m) > 0 {
			got[m[0]] += string(m[1:])
		}
		if until != nil && until(got) {
			return got
		}
	}
}

func wsWrite(t *testing.T, c *websocket.Conn, channel byte, data string) {
	t.Helper()
	if err := c.WriteMessage(websocket.BinaryMessage, append([]byte{channel}, data...)); err != nil {
		t.Fatal(err)
	}
}

// execStatus is the exec's status on the error channel (v4).
type execStatus struct {
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Details struct {
		Causes []struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"causes"`
	} `json:"details"`
}

// TestExecStreams: Exec through the streaming server, with and without a
// terminal, with stdin, and the command's exit status.
func TestExecStreams(t *testing.T) {
	e := newCRIEnv(t, "")
	newStreamPod(t, e, stage0.AppSpec{Name: "c1", Exec: "/bin/sleep", Args: []string{"1000"}})
	ctx := ctxT(t)
	done := func(m map[byte]string) bool { return m[3] != "" }

	resp, err := e.rs.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"sh", "-c", "echo -n hello; echo oops >&2; exit 5"}, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	got := wsRead(t, wsDial(t, resp.Url), done)
	var st execStatus
	json.Unmarshal([]byte(got[3]), &st)
	if got[1] != "hello" || got[2] != "oops\n" || st.Reason != "NonZeroExitCode" || len(st.Details.Causes) != 1 || st.Details.Causes[0].Message != "5" {
		t.Errorf("exec: stdout %q stderr %q status %s", got[1], got[2], got[3])
	}
	// The URL is good for one stream only.
	if r, err := http.Get(resp.Url); err != nil || r.StatusCode != http.StatusNotFound {
		t.Errorf("a used URL: %v %v", r, err)
	} else {
		r.Body.Close()
	}

	// stdin, a line the command reads.
	resp, err = e.rs.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"sh", "-c", "read l; echo got $l"}, Stdin: true, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	c := wsDial(t, resp.Url)
	wsWrite(t, c, 0, "input\n")
	got = wsRead(t, c, done)
	json.Unmarshal([]byte(got[3]), &st)
	if got[1] != "got input\n" || st.Status != "Success" {
		t.Errorf("exec with stdin: stdout %q status %s", got[1], got[3])
	}

	// A terminal of the size the client says.
	resp, err = e.rs.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"sh", "-c", "read l; stty size; test -t 1 && echo tty"}, Stdin: true, Stdout: true, Tty: true})
	if err != nil {
		t.Fatal(err)
	}
	c = wsDial(t, resp.Url)
	wsWrite(t, c, 4, `{"Width":120,"Height":40}`)
	wsWrite(t, c, 0, "go\n")
	got = wsRead(t, c, done)
	if !strings.Contains(got[1], "40 120\r\n") || !strings.Contains(got[1], "tty\r\n") || !strings.Contains(got[3], "Success") {
		t.Errorf("exec with a tty: stdout %q status %s", got[1], got[3])
	}
}

// TestPortForward: a stream reaches a server on the sandbox's loopback.
func TestPortForward(t *testing.T) {
	e := newCRIEnv(t, "")
	p := newStreamPod(t, e, stage0.AppSpec{Name: "web", Exec: "/bin/sh", Args: []string{"-c", "mkdir -p /www && echo hello from the pod > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"}})
	ctx := ctxT(t)
	// The server listens once its app has started it.
	for i := 0; ; i++ {
		r, err := e.rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: "web", Cmd: []string{"sh", "-c", "grep -q ':1F90 00000000:0000 0A' /proc/net/tcp"}})
		if err == nil && r.ExitCode == 0 {
			break
		}
		if i == 100 {
			t.Fatalf("the pod's server does not listen: %v %v", r, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := e.rs.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: p.uuid, Port: []int32{8080}})
	if err != nil {
		t.Fatal(err)
	}
	c := wsDial(t, resp.Url)
	// Each channel (data 0, error 1) starts with the port.
	port := make([]byte, 2)
	binary.LittleEndian.PutUint16(port, 8080)
	wsWrite(t, c, 0, "GET / HTTP/1.0\r\n\r\n")
	got := wsRead(t, c, func(m map[byte]string) bool { return strings.Contains(m[0], "hello from the pod") })
	if !strings.HasPrefix(got[0], string(port)+"HTTP/1.") || !strings.Contains(got[0], "hello from the pod\n") {
		t.Errorf("port forward: data %q error %q", got[0], got[1])
	}
}

// TestAttach: a session gets the container's output and feeds its stdin;
// with stdin_once its end closes the container's stdin, and the
// container, a shell, exits.
func TestAttach(t *testing.T) {
	e := newCRIEnv(t, "")
	p := newStreamPod(t, e, stage0.AppSpec{Name: "sh", Exec: "/bin/sh", Stdin: true, StdinOnce: true})
	ctx := ctxT(t)
	resp, err := e.rs.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: "sh", Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	c := wsDial(t, resp.Url)
	wsWrite(t, c, 0, "echo hello; echo to-stderr >&2\n")
	got := wsRead(t, c, func(m map[byte]string) bool { return m[1] == "hello\n" && m[2] == "to-stderr\n" })
	if got[1] != "hello\n" || got[2] != "to-stderr\n" {
		t.Errorf("attach: stdout %q stderr %q", got[1], got[2])
	}
	c.Close() // the session ends, the shell's stdin with it (stdin_once)
	for i := 0; ; i++ {
		apps, err := e.rt.ListApps(ctx, p.uuid)
		if err == nil && len(apps) == 1 && apps[0].State == stage0.AppExited {
			break
		}
		if i == 200 {
			t.Fatalf("the shell did not end with its stdin: %v %v", apps, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The log has what the shell wrote too.
	var log strings.Builder
	if err := e.rt.Logs(ctx, p.uuid, "sh", false, &log); err != nil || !strings.Contains(log.String(), "hello\n") {
		t.Errorf("log: %q %v", log.String(), err)
	}
}
