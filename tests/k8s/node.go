package k8s

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/karman-project/karman/network"
	"github.com/karman-project/karman/tests/testenv"
	"github.com/karman-project/karman/tests/testimage"
	"github.com/karman-project/karman/tests/testregistry"
)

// CRITools is where scripts/cri-tools.sh keeps critest and crictl.
const CRITools = "/var/cache/karman/cri-tools-v1.37.0"

// DeadProxy is the HTTP(S)_PROXY the runtime and the kubelet run with: a
// loopback port nothing listens on, so any fetch that is not sent to the
// loopback registry fails.
const DeadProxy = "http://127.0.0.1:9"

// Node is a Karman node: a fresh `karman-full agent --cri-socket` and the
// loopback registry of look-alike images it pulls from.
type Node struct {
	// Sock is the agent's CRI socket (a path; the endpoint is
	// "unix://"+Sock).
	Sock string
	// Registry is the loopback registry's HOST:PORT. The public names
	// registry.k8s.io/..., k8s.gcr.io/... and gcr.io/... resolve to it
	// through the node's registries.conf, and the images are signed with
	// a key the node's policy trusts for them.
	Registry string
	// WorkDir holds everything of the node (tests/conformance/lib.sh's $W).
	WorkDir string
	// DataDir and ConfigDir are the agent's --dir and --config-dir.
	DataDir, ConfigDir string
	// Bridge, NetNSDir and Subnet are the node's private pod network.
	Bridge, NetNSDir, Subnet string
	// AgentLog is the agent's output.
	AgentLog string
	// AgentPID is the agent's process.
	AgentPID int
}

// Endpoint is the CRI endpoint a kubelet is given.
func (n *Node) Endpoint() string { return "unix://" + n.Sock }

// nodeScript starts the node with the functions of scripts/conformance.sh
// and serves until its standard input closes (or SIGTERM); its exit trap,
// cri_cleanup, removes every sandbox left and stops the agent and the
// registry by PID.
const nodeScript = `set -euo pipefail
source "$KARMAN_ROOT/tests/conformance/lib.sh"
cri_workdir
cri_tools
cri_registry
cri_karman
echo "W=$W"
echo "CRI_SOCK=$CRI_SOCK"
echo "REG=$REG"
echo "AGENT_PID=$CRI_RUNTIME_PID"
echo READY
read -r _ || true
`

// StartNode starts a node whose programs (karman-full, karman-stage1,
// karman-testimage, karman-lookalike) are in bin, as `make build` leaves
// them in bin/. It is stopped, and its pods removed, in t.Cleanup.
func StartNode(t testing.TB, bin string) *Node {
	t.Helper()
	testenv.RequireRoot(t, "the CRI runtime creates namespaces, mounts and cgroups")
	for _, b := range []string{"karman-full", "karman-stage1", "karman-testimage", "karman-lookalike"} {
		testenv.RequireFile(t, filepath.Join(bin, b), "make build (the node takes its programs from "+bin+")")
	}
	testenv.RequireFile(t, filepath.Join(CRITools, "crictl"), "scripts/setup.sh --tests (it builds critest and crictl with scripts/cri-tools.sh)")
	testenv.RequireFile(t, testimage.DynamicBusybox, "scripts/setup.sh --tests (it unpacks Debian's dynamic busybox for the look-alike images)")
	testenv.RequireFile(t, testregistry.DistributionBinary, "apt-get install docker-registry")
	testenv.RequireCommand(t, "ip", "apt-get install iproute2")
	root, err := testenv.ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}

	id := randHex(t, 3)
	n := &Node{
		Bridge:   "kk" + id,
		NetNSDir: "/run/karman/k8s-netns-" + id,
		Subnet:   fmt.Sprintf("10.233.%d.0/24", testenv.FreeSubnet(t, "10.233", "kk")),
	}
	// Cleanups run last-registered first: the node stops, then its
	// network goes.
	t.Cleanup(func() {
		if err := network.RemoveNetwork(n.Bridge); err != nil {
			t.Errorf("remove the node's network: %v", err)
		}
		unix.Unmount(n.NetNSDir, unix.MNT_DETACH)
		os.RemoveAll(n.NetNSDir)
	})
	// The namespaces' directory is a shared mount point, as the agent
	// makes it for its first pod: made now, it is in the leak checks'
	// first snapshot as in their last.
	if err := os.MkdirAll(n.NetNSDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(n.NetNSDir, n.NetNSDir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		t.Fatalf("bind %s: %v", n.NetNSDir, err)
	}
	if err := unix.Mount("", n.NetNSDir, "", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		t.Fatalf("make %s shared: %v", n.NetNSDir, err)
	}
	netcfg, err := json.Marshal(map[string]any{
		"version":  1,
		"default":  map[string]any{"bridge": n.Bridge, "subnet": n.Subnet},
		"netnsDir": n.NetNSDir,
		"stateDir": t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}

	tmp := t.TempDir()
	errPath := filepath.Join(tmp, "node.err")
	errFile, err := os.Create(errPath)
	if err != nil {
		t.Fatal(err)
	}
	defer errFile.Close()
	cmd := exec.Command("bash", "-c", nodeScript)
	cmd.Env = append(os.Environ(), "KARMAN_ROOT="+root, "BIN="+bin, "TMPDIR="+tmp,
		"KARMAN_NETWORK_JSON="+string(netcfg), "KEEP_WORKDIR=1")
	cmd.Stderr = errFile
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the agent's log (%s), its end:\n%s", n.AgentLog, tail(n.AgentLog, 60))
		}
		stdin.Close() // the script's cri_cleanup stops what it started
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				<-done
				t.Errorf("the node's script (PID %d) did not stop; killed", cmd.Process.Pid)
			}
		}
		if b, _ := os.ReadFile(errPath); t.Failed() {
			t.Logf("the node's script:\n%s", b)
		}
	})

	vals := map[string]string{}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		if line == "READY" {
			break
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			vals[k] = v
		}
	}
	if vals["CRI_SOCK"] == "" || vals["AGENT_PID"] == "" {
		<-done
		b, _ := os.ReadFile(errPath)
		t.Fatalf("the node did not start (tests/conformance/lib.sh):\n%s", b)
	}
	go func() { // the script prints nothing more; keep its pipe drained
		for sc.Scan() {
		}
	}()
	n.Sock, n.Registry, n.WorkDir = vals["CRI_SOCK"], vals["REG"], vals["W"]
	n.DataDir = filepath.Join(n.WorkDir, "karman", "data")
	n.ConfigDir = filepath.Join(n.WorkDir, "karman", "etc")
	n.AgentLog = filepath.Join(n.WorkDir, "karman", "agent.log")
	if n.AgentPID, err = strconv.Atoi(vals["AGENT_PID"]); err != nil {
		t.Fatalf("AGENT_PID=%q: %v", vals["AGENT_PID"], err)
	}
	return n
}

func randHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// tail is the last n lines of a file, for a failure's log.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Runtime is a CRI client of the node's runtime service, closed in
// t.Cleanup.
func (n *Node) Runtime(t testing.TB) runtimeapi.RuntimeServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(n.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn)
}
