package k8s

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Components are the programs of BinDir a cluster runs.
var Components = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl"}

// ServiceCIDR is the cluster's service range; ServiceIP the API server's
// address in it.
const (
	ServiceCIDR = "10.96.0.0/24"
	ServiceIP   = "10.96.0.1"
)

// Options configures a one-node cluster.
type Options struct {
	// Dir is a private, empty directory for everything the cluster
	// writes (certificates, etcd's data, the kubelet's root, logs).
	Dir string
	// BinDir holds the Kubernetes programs (default BinDir, where
	// scripts/k8s-build.sh puts them); Etcd is etcd (default Etcd()).
	BinDir string
	Etcd   string
	// CRISocket is the runtime's CRI socket the kubelet uses.
	CRISocket string
	// NodeName is the node's name (default "127.0.0.1": the kubelet
	// takes an IP given as its host name as the node's address, and
	// refuses a loopback --node-ip; the API server then reaches the
	// kubelet on loopback with no name to resolve).
	NodeName string
	// KubeletArgs are more flags for the kubelet (e.g. --v=4).
	KubeletArgs []string
	// Log, if not nil, receives one line per step.
	Log io.Writer
}

// Cluster is a running one-node cluster: etcd, kube-apiserver,
// kube-scheduler, kube-controller-manager and the kubelet, each a child
// process on loopback ports, stopped by PID.
type Cluster struct {
	o Options
	// Kubeconfig is the admin's kubeconfig (group system:masters).
	Kubeconfig string
	// Server is the API server's URL.
	Server   string
	NodeName string
	// KubeletPort is the kubelet's HTTPS port (127.0.0.1).
	KubeletPort int

	pki   *pki
	procs []*proc
	admin *http.Client
	// tunables are the host's values of the kernel settings the kubelet
	// changes (kubeletTunables), put back by Stop.
	tunables map[string]string
}

// proc is one component.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// Missing lists the programs of o that are not there.
func Missing(o Options) []string {
	o.defaults()
	var out []string
	for _, c := range Components {
		if _, err := os.Stat(filepath.Join(o.BinDir, c)); err != nil {
			out = append(out, filepath.Join(o.BinDir, c))
		}
	}
	if _, err := os.Stat(o.Etcd); err != nil {
		out = append(out, o.Etcd)
	}
	return out
}

func (o *Options) defaults() {
	if o.BinDir == "" {
		o.BinDir = BinDir
	}
	if o.Etcd == "" {
		o.Etcd = Etcd()
	}
	if o.NodeName == "" {
		o.NodeName = "127.0.0.1"
	}
}

// Start brings the cluster up and returns once the node is Ready. On
// error what was started is stopped.
func Start(ctx context.Context, o Options) (c *Cluster, err error) {
	o.defaults()
	if o.Dir == "" || o.CRISocket == "" {
		return nil, errors.New("k8s: Options.Dir and Options.CRISocket are required")
	}
	if m := Missing(o); len(m) > 0 {
		return nil, fmt.Errorf("k8s: missing %s: run scripts/setup.sh --tests (it builds them with scripts/k8s-build.sh)", strings.Join(m, ", "))
	}
	c = &Cluster{o: o, NodeName: o.NodeName}
	defer func() {
		if err != nil {
			c.Stop()
			c = nil
		}
	}()
	for _, d := range []string{"pki", "logs", "etcd", "kubelet", "pod-logs", "volume-plugins", "apiserver", "manifests"} {
		if err := os.MkdirAll(filepath.Join(o.Dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	if err := c.certificates(); err != nil {
		return nil, err
	}
	ports, err := freePorts(7)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, apiPort, schedPort, cmPort := ports[0], ports[1], ports[2], ports[3], ports[4]
	c.KubeletPort = ports[5]
	kubeletHealthz := ports[6]
	c.Server = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	if err := c.kubeconfigs(); err != nil {
		return nil, err
	}

	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPeer)
	if err := c.start("etcd", o.Etcd,
		"--name", "karman", "--data-dir", filepath.Join(o.Dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "karman="+peerURL, "--initial-cluster-state", "new",
		"--log-level", "warn"); err != nil {
		return nil, err
	}
	if err := c.waitHTTP(ctx, "etcd", etcdURL+"/health", http.DefaultClient, `"health":"true"`); err != nil {
		return nil, err
	}

	p := c.path
	if err := c.start("kube-apiserver", filepath.Join(o.BinDir, "kube-apiserver"),
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", strconv.Itoa(apiPort),
		"--endpoint-reconciler-type", "none",
		"--cert-dir", filepath.Join(o.Dir, "apiserver"),
		"--tls-cert-file", p("apiserver.crt"), "--tls-private-key-file", p("apiserver.key"),
		"--client-ca-file", c.pki.CAFile(),
		"--kubelet-client-certificate", p("apiserver-kubelet-client.crt"), "--kubelet-client-key", p("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority", c.pki.CAFile(),
		"--service-account-key-file", p("sa.pub"), "--service-account-signing-key-file", p("sa.key"),
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range", ServiceCIDR,
		"--authorization-mode", "Node,RBAC",
		"--allow-privileged=true",
		"--profiling=false"); err != nil {
		return nil, err
	}
	if c.admin, err = c.client(p("admin.crt"), p("admin.key")); err != nil {
		return nil, err
	}
	if err := c.waitHTTP(ctx, "kube-apiserver", c.Server+"/readyz", c.admin, "ok"); err != nil {
		return nil, err
	}

	if err := c.start("kube-controller-manager", filepath.Join(o.BinDir, "kube-controller-manager"),
		"--kubeconfig", p("controller-manager.conf"),
		"--authentication-kubeconfig", p("controller-manager.conf"), "--authorization-kubeconfig", p("controller-manager.conf"),
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(cmPort),
		"--cert-dir", filepath.Join(o.Dir, "pki", "controller-manager"),
		"--service-account-private-key-file", p("sa.key"), "--root-ca-file", c.pki.CAFile(),
		"--use-service-account-credentials",
		"--cluster-signing-cert-file", c.pki.CAFile(), "--cluster-signing-key-file", p("ca.key"),
		"--service-cluster-ip-range", ServiceCIDR,
		"--leader-elect=false", "--profiling=false"); err != nil {
		return nil, err
	}
	if err := c.start("kube-scheduler", filepath.Join(o.BinDir, "kube-scheduler"),
		"--kubeconfig", p("scheduler.conf"),
		"--authentication-kubeconfig", p("scheduler.conf"), "--authorization-kubeconfig", p("scheduler.conf"),
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(schedPort),
		"--cert-dir", filepath.Join(o.Dir, "pki", "scheduler"),
		"--leader-elect=false", "--profiling=false"); err != nil {
		return nil, err
	}
	insecure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for name, port := range map[string]int{"kube-controller-manager": cmPort, "kube-scheduler": schedPort} {
		if err := c.waitHTTP(ctx, name, fmt.Sprintf("https://127.0.0.1:%d/healthz", port), insecure, "ok"); err != nil {
			return nil, err
		}
	}

	conf := filepath.Join(o.Dir, "kubelet.json")
	kc, err := json.MarshalIndent(c.kubeletConfig(kubeletHealthz), "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(conf, kc, 0o600); err != nil {
		return nil, err
	}
	if c.tunables, err = readTunables(); err != nil {
		return nil, err
	}
	if err := c.start("kubelet", filepath.Join(o.BinDir, "kubelet"), append([]string{
		"--config", conf, "--kubeconfig", p("kubelet.conf"),
		"--container-runtime-endpoint", "unix://" + o.CRISocket,
		"--hostname-override", o.NodeName,
		"--root-dir", filepath.Join(o.Dir, "kubelet"),
		"--cert-dir", filepath.Join(o.Dir, "kubelet", "pki")}, o.KubeletArgs...)...); err != nil {
		return nil, err
	}
	if err := c.waitNodeReady(ctx); err != nil {
		return nil, err
	}
	// Pods are admitted once their namespace's default service account
	// (and its root CA ConfigMap, which the token volume holds) exists.
	for _, path := range []string{"/api/v1/namespaces/default/serviceaccounts/default", "/api/v1/namespaces/default/configmaps/kube-root-ca.crt"} {
		if err := c.waitGet(ctx, path); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// waitGet polls (at most a minute) until an API path exists.
func (c *Cluster) waitGet(ctx context.Context, path string) error {
	var err error
	for range 600 {
		var v map[string]any
		if err = c.Get(ctx, path, &v); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("k8s: %s not there after a minute: %w", path, err)
}

// path is a file of the cluster's PKI directory.
func (c *Cluster) path(name string) string { return filepath.Join(c.o.Dir, "pki", name) }

// certificates makes the CA, the serving and client certificates and the
// service-account key pair.
func (c *Cluster) certificates() error {
	var err error
	if c.pki, err = newPKI(filepath.Join(c.o.Dir, "pki")); err != nil {
		return err
	}
	loop := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	specs := []certSpec{
		{name: "apiserver", cn: "kube-apiserver", server: true,
			dns: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
			ips: append([]net.IP{net.ParseIP(ServiceIP)}, loop...)},
		{name: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client", orgs: []string{"system:masters"}, client: true},
		{name: "admin", cn: "kubernetes-admin", orgs: []string{"system:masters"}, client: true},
		{name: "kubelet-client", cn: "system:node:" + c.NodeName, orgs: []string{"system:nodes"}, client: true},
		{name: "kubelet-serving", cn: "system:node:" + c.NodeName, orgs: []string{"system:nodes"}, server: true,
			dns: []string{"localhost"}, ips: loop},
		{name: "scheduler", cn: "system:kube-scheduler", client: true},
		{name: "controller-manager", cn: "system:kube-controller-manager", client: true},
	}
	if ip := net.ParseIP(c.NodeName); ip == nil {
		specs[4].dns = append(specs[4].dns, c.NodeName)
	}
	for _, s := range specs {
		if _, _, err := c.pki.issue(s); err != nil {
			return err
		}
	}
	_, _, err = c.pki.serviceAccountKeys()
	return err
}

func (c *Cluster) kubeconfigs() error {
	c.Kubeconfig = c.path("admin.conf")
	for _, k := range []struct{ file, cert, user string }{
		{"admin.conf", "admin", "kubernetes-admin"},
		{"kubelet.conf", "kubelet-client", "system:node:" + c.NodeName},
		{"scheduler.conf", "scheduler", "system:kube-scheduler"},
		{"controller-manager.conf", "controller-manager", "system:kube-controller-manager"},
	} {
		if err := writeKubeconfig(c.path(k.file), c.Server, c.pki.CAFile(), c.path(k.cert+".crt"), c.path(k.cert+".key"), k.user); err != nil {
			return err
		}
	}
	return nil
}

// kubeletConfig is the standalone kubelet's KubeletConfiguration
// (KubeletConfig: cgroupfs on this cgroup v1 host, no QoS cgroups, no
// eviction, loopback only) joined to the cluster: its serving certificate
// from the cluster's CA, client certificates of that CA accepted (the API
// server's), its directories private, no DNS configuration handed to pods
// (there is no cluster DNS, and the host's resolvers are not for them),
// images kept.
func (c *Cluster) kubeletConfig(healthz int) map[string]any {
	cfg := KubeletConfig(filepath.Join(c.o.Dir, "manifests"), filepath.Join(c.o.Dir, "pod-logs"), c.KubeletPort, healthz)
	for k, v := range map[string]any{
		"tlsCertFile":       c.path("kubelet-serving.crt"),
		"tlsPrivateKeyFile": c.path("kubelet-serving.key"),
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": false},
			"webhook":   map[string]any{"enabled": false},
			"x509":      map[string]any{"clientCAFile": c.pki.CAFile()},
		},
		"volumePluginDir":             filepath.Join(c.o.Dir, "volume-plugins"),
		"resolvConf":                  "",
		"clusterDomain":               "cluster.local",
		"imageGCHighThresholdPercent": 100,
		"imageGCLowThresholdPercent":  99,
		"serializeImagePulls":         false,
		"rotateCertificates":          false,
		"serverTLSBootstrap":          false,
	} {
		cfg[k] = v
	}
	return cfg
}

// Env is the environment of every component and of kubectl: the
// caller's, with the proxies at DeadProxy. Go's HTTP clients never proxy
// loopback addresses; NO_PROXY says so again for the API server's.
func Env() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "KUBECONFIG":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HTTP_PROXY="+DeadProxy, "HTTPS_PROXY="+DeadProxy, "http_proxy="+DeadProxy, "https_proxy="+DeadProxy,
		"NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost")
}

// start runs one component, its output in logs/NAME.log.
func (c *Cluster) start(name, bin string, args ...string) error {
	c.logf("starting %s", name)
	logPath := filepath.Join(c.o.Dir, "logs", name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = Env()
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = c.o.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("k8s: %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	c.procs = append(c.procs, p)
	return nil
}

// PIDs are the components' process IDs by name.
func (c *Cluster) PIDs() map[string]int {
	out := map[string]int{}
	for _, p := range c.procs {
		out[p.name] = p.cmd.Process.Pid
	}
	return out
}

// LogFile is the path of a component's log.
func (c *Cluster) LogFile(name string) string { return filepath.Join(c.o.Dir, "logs", name+".log") }

// Stop stops the components in the reverse order of their start (the
// kubelet first, etcd last), by PID: SIGTERM, SIGKILL 15 s later.
func (c *Cluster) Stop() error {
	var errs []error
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		select {
		case <-p.done:
			continue
		default:
		}
		c.logf("stopping %s (pid %d)", p.name, p.cmd.Process.Pid)
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
			errs = append(errs, fmt.Errorf("k8s: %s did not stop on SIGTERM in 15 s", p.name))
		}
	}
	c.procs = nil
	errs = append(errs, restoreTunables(c.tunables))
	c.tunables = nil
	// What the kubelet left mounted under its root (the volumes of pods
	// it had not cleaned up when it stopped).
	for _, m := range MountsUnder(c.o.Dir) {
		c.logf("unmounting %s", m)
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("k8s: unmount %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

// readTunables reads the host's values of kubeletTunables.
func readTunables() (map[string]string, error) {
	saved := map[string]string{}
	for _, k := range kubeletTunables {
		b, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			return nil, fmt.Errorf("k8s: read the host's %s before the kubelet changes it: %w", k, err)
		}
		saved[k] = strings.TrimSpace(string(b))
	}
	return saved, nil
}

// restoreTunables writes back what readTunables read, once the kubelet is
// gone: the host's kernel is left as the cluster found it.
func restoreTunables(saved map[string]string) error {
	var errs []error
	for k, v := range saved {
		p := filepath.Join("/proc/sys", k)
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == v {
			continue
		}
		if err := os.WriteFile(p, []byte(v), 0); err != nil {
			errs = append(errs, fmt.Errorf("k8s: restore the host's %s to %s after the kubelet: %w", k, v, err))
		}
	}
	return errors.Join(errs...)
}

// exited reports a component that ended, with the end of its log.
func (c *Cluster) exited() error {
	for _, p := range c.procs {
		select {
		case <-p.done:
			return fmt.Errorf("k8s: %s exited (%v); the end of %s:\n%s", p.name, p.err, p.log, tail(p.log, 30))
		default:
		}
	}
	return nil
}

func (c *Cluster) logf(format string, a ...any) {
	if c.o.Log != nil {
		fmt.Fprintf(c.o.Log, "k8s: "+format+"\n", a...)
	}
}

// client is an HTTPS client of the API server with a client certificate.
func (c *Cluster) client(certFile, keyFile string) (*http.Client, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.pki.caCert)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy:           nil,
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
	}}, nil
}

// waitHTTP polls url (at most 2 minutes) until it answers 200 with want in
// its body.
func (c *Cluster) waitHTTP(ctx context.Context, name, url string, hc *http.Client, want string) error {
	var last string
	for range 1200 {
		if err := c.exited(); err != nil {
			return err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := hc.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(b, []byte(want)) {
				c.logf("%s is up", name)
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(b))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("k8s: %s not ready after 2 minutes (%s); the end of its log:\n%s", name, last, tail(c.LogFile(name), 30))
}

// Get fetches an API path (e.g. /api/v1/nodes/NAME) as the admin and
// decodes the JSON answer into v.
func (c *Cluster) Get(ctx context.Context, path string, v any) error {
	return getJSON(ctx, c.admin, c.Server+path, v)
}

// KubeletGet fetches a path of the kubelet's API (e.g. /stats/summary)
// as the API server does, with its kubelet client certificate, the
// kubelet's serving certificate checked against the CA. (The API server's
// node proxy, /api/v1/nodes/NAME/proxy/..., refuses a node whose address
// is loopback, as this one's is.)
func (c *Cluster) KubeletGet(ctx context.Context, path string, v any) error {
	hc, err := c.client(c.path("apiserver-kubelet-client.crt"), c.path("apiserver-kubelet-client.key"))
	if err != nil {
		return err
	}
	return getJSON(ctx, hc, fmt.Sprintf("https://127.0.0.1:%d%s", c.KubeletPort, path), v)
}

func getJSON(ctx context.Context, hc *http.Client, url string, v any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, v)
}

// APINode is the part of a Node object the cluster's users read.
type APINode struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Status struct {
		Capacity    map[string]string `json:"capacity"`
		Allocatable map[string]string `json:"allocatable"`
		Conditions  []struct {
			Type    string `json:"type"`
			Status  string `json:"status"`
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"conditions"`
		NodeInfo struct {
			ContainerRuntimeVersion string `json:"containerRuntimeVersion"`
			KubeletVersion          string `json:"kubeletVersion"`
		} `json:"nodeInfo"`
	} `json:"status"`
}

// Ready reports the node's Ready condition and its message.
func (n *APINode) Ready() (bool, string) {
	for _, cd := range n.Status.Conditions {
		if cd.Type == "Ready" {
			return cd.Status == "True", cd.Reason + ": " + cd.Message
		}
	}
	return false, "no Ready condition"
}

// waitNodeReady waits (at most 3 minutes) for the node to register and be
// Ready.
func (c *Cluster) waitNodeReady(ctx context.Context) error {
	last := "not registered"
	for range 1800 {
		if err := c.exited(); err != nil {
			return err
		}
		var n APINode
		if err := c.Get(ctx, "/api/v1/nodes/"+c.NodeName, &n); err == nil {
			ok, why := n.Ready()
			if ok {
				c.logf("node %s is Ready (%s)", c.NodeName, n.Status.NodeInfo.ContainerRuntimeVersion)
				return nil
			}
			last = why
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("k8s: node %s not Ready after 3 minutes (%s); the end of the kubelet's log:\n%s", c.NodeName, last, tail(c.LogFile("kubelet"), 40))
}

// Kubectl runs kubectl against the cluster as the admin.
func (c *Cluster) Kubectl(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	cmd := c.KubectlCmd(ctx, args...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(errb.Bytes()))
	}
	return out.Bytes(), nil
}

// KubectlCmd is kubectl ARGS against the cluster, not started.
func (c *Cluster) KubectlCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.o.BinDir, "kubectl"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Env = Env()
	return cmd
}

// freePorts finds n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}
