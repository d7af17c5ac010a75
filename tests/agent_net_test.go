package tests

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/karman-project/karman/agentapi"
)

// TestAgentTaskPort: a task on the default network with a port is
// reachable on the host's loopback at that port, and the forward goes
// with the task (the network's leak check in the cleanup).
func TestAgentTaskPort(t *testing.T) {
	ne := newNetEnv(t, 24)
	e := newAgentEnvOn(t, ne.podEnv)
	e.start(t)
	ctx := ctxT(t, 2*time.Minute)
	node, err := e.c.Node(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(node.Networks, "default") || !slices.Contains(node.Networks, "none") {
		t.Errorf("the node reports networks %v, want none, host and default at least", node.Networks)
	}
	hp := freePort(t)
	spec := e.spec("mkdir -p /www && echo pong-task > /www/index.html && exec httpd -f -p 8080 -h /www")
	spec.Networks = []string{"default"}
	spec.Ports = []agentapi.Port{{HostPort: hp, ContainerPort: 8080}}
	tk, err := e.c.Launch(ctx, "web", spec)
	if err != nil {
		t.Fatal(err)
	}
	ne.uuids = append(ne.uuids, tk.PodUUID)
	c := http.Client{Timeout: 10 * time.Second}
	eventually(t, 10*time.Second, func() error {
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", hp))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if !strings.HasPrefix(string(b), "pong-task") {
			return fmt.Errorf("answer %q", b)
		}
		return nil
	})
	if _, err := e.c.Stop(ctx, "web", "5s"); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Delete(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", hp)); err == nil {
		t.Errorf("port %d still answers after the task was deleted", hp)
	}
}
