// Package k8s runs real Kubernetes components against a Karman node for
// the end-to-end tests of issue 18 (docs/kubernetes.md, "A standalone
// kubelet"). It owns the parts every such test shares:
//
//   - where scripts/k8s-build.sh keeps the binaries it builds from the
//     wrapper modules in ./build (Binary, Etcd, RequireBinaries);
//   - a node: the loopback registry of look-alike images, signed with a
//     fresh test key, and a fresh `karman-full agent --cri-socket` on
//     private directories and a private network that trusts that key and
//     reaches the public image names through registries.conf (StartNode).
//     It is the set-up scripts/conformance.sh runs: StartNode drives the
//     same shell functions, tests/conformance/lib.sh;
//   - a kubelet on that node's CRI socket, standalone (no API server) or
//     given a kubeconfig (StartKubelet, KubeletOptions), on a private root
//     directory, with HTTP(S)_PROXY at a dead loopback port;
//   - a one-node cluster (docs/kubernetes.md, "A one-node cluster"): a CA
//     and certificates made with crypto/x509, kubeconfigs, etcd,
//     kube-apiserver, kube-scheduler, kube-controller-manager and a
//     kubelet on a CRI socket, every one on loopback ports, in a private
//     directory, with HTTP(S)_PROXY at a dead loopback port (Start,
//     Cluster); it takes no testing.TB, so that tests/cmd/karman-k8s
//     (`make k8s-demo`, the pod start benchmark) runs it too, and is
//     stopped by PID with Cluster.Stop;
//   - what the cluster's tests look at: the agent killed and restarted
//     under it (Node.KillAgent), the sockets of its processes
//     (OffLoopback), pod start latency (Cluster.MeasurePodStarts).
//
// Everything else is stopped by PID in t.Cleanup. The helpers fail the test,
// in strict mode, when a prerequisite is missing, naming the command that
// installs it.
package k8s
