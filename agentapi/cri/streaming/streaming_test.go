package streaming

import (
	"context"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/stage0"
)

// fakeRuntime records what the streams asked of it.
type fakeRuntime struct {
	enter  stage0.EnterOptions
	uuid   string
	sizes  chan stage0.TermSize
	status int
}

func (f *fakeRuntime) Enter(_ context.Context, uuid string, o stage0.EnterOptions) (int, error) {
	f.uuid, f.enter = uuid, o
	if o.Resize != nil {
		select {
		case s := <-o.Resize:
			f.sizes <- s
		case <-time.After(10 * time.Second):
		}
	}
	if o.Stdout != nil {
		io.WriteString(o.Stdout, "out:"+strings.Join(o.Args, " "))
	}
	return f.status, nil
}

func (f *fakeRuntime) Attach(context.Context, string, stage0.AttachOptions) error {
	return errors.New("not here")
}

func (f *fakeRuntime) PortForward(context.Context, string, int, io.ReadWriteCloser) error {
	return errors.New("not here")
}

type fakeIDs struct{}

func (fakeIDs) Container(_ context.Context, id string) (string, string, error) {
	if id != "c1" {
		return "", "", errors.New("no such container")
	}
	return "pod-uuid", "app1", nil
}

func (fakeIDs) Sandbox(context.Context, string) (string, error) { return "pod-uuid", nil }

func TestNewRefusesOtherThanLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "10.1.2.3:1234", ":0", "nohost"} {
		if _, err := New(Config{Addr: addr}, nil, nil, nil); err == nil {
			t.Errorf("New(%q) succeeded", addr)
		}
	}
	for _, addr := range []string{"", "127.0.0.1:0", "[::1]:0", "localhost:0"} {
		if _, err := New(Config{Addr: addr}, nil, nil, nil); err != nil {
			t.Errorf("New(%q): %v", addr, err)
		}
	}
}

// TestExec: the container's pod and app, the command, its streams, its
// terminal's size and its exit status reach and leave the runtime as
// the CRI's client sees them.
func TestExec(t *testing.T) {
	rt := &fakeRuntime{sizes: make(chan stage0.TermSize, 1), status: 4}
	s, err := New(Config{}, rt, fakeIDs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"x"}, Stdout: true}); err == nil {
		t.Errorf("GetExec before Start succeeded")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	resp, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"echo", "hi"}, Stdout: true, Stdin: true, Tty: true})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(resp.Url)
	if !strings.HasPrefix(u.Host, "127.0.0.1:") || u.Host == "127.0.0.1:0" {
		t.Errorf("URL %s", resp.Url)
	}
	u.Scheme = "ws"
	c, _, err := (&websocket.Dialer{Subprotocols: []string{"v4.channel.k8s.io"}}).Dial(u.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.WriteMessage(websocket.BinaryMessage, append([]byte{4}, `{"Width":100,"Height":30}`...))
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got := map[byte]string{}
	for got[3] == "" {
		_, m, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("read: %v (so far %q)", err, got)
		}
		if len(m) > 0 {
			got[m[0]] += string(m[1:])
		}
	}
	if rt.uuid != "pod-uuid" || rt.enter.App != "app1" || strings.Join(rt.enter.Args, " ") != "echo hi" || !rt.enter.TTY || rt.enter.Stdin == nil || rt.enter.Stderr != nil {
		t.Errorf("Enter got %s %+v", rt.uuid, rt.enter)
	}
	if sz := <-rt.sizes; sz != (stage0.TermSize{Rows: 30, Cols: 100}) {
		t.Errorf("size %+v", sz)
	}
	if got[1] != "out:echo hi" || !strings.Contains(got[3], `"NonZeroExitCode"`) || !strings.Contains(got[3], `"message":"4"`) {
		t.Errorf("stdout %q status %s", got[1], got[3])
	}
}
