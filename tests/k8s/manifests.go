package k8s

import "fmt"

// Images of the look-alikes (tests/testimage.CRIImages) the cluster's
// workloads run, by their public names: the runtime fetches them from the
// loopback registry (registries.conf for karman, mirrors for containerd).
const (
	NginxImage   = "registry.k8s.io/e2e-test-images/nginx:1.14-2"
	BusyboxImage = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
)

// WebDeployment is a Deployment NAME of REPLICAS copies of the nginx
// look-alike serving "Welcome to nginx!" on port 80, Ready once its page
// answers.
func WebDeployment(name string, replicas int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
spec:
  replicas: %[2]d
  selector:
    matchLabels: {app: %[1]s}
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: nginx
        image: %[3]s
        imagePullPolicy: IfNotPresent
        ports:
        - containerPort: 80
        readinessProbe:
          httpGet: {path: /, port: 80}
          periodSeconds: 1
`, name, replicas, NginxImage)
}

// BusyboxPod is a pod NAME running `sh -c SCRIPT` in the busybox
// look-alike (image IMAGE if not empty), with extra YAML (indented for the
// container) appended to its container.
func BusyboxPod(name, image, script, extra string) string {
	if image == "" {
		image = BusyboxImage
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  labels: {app: %[1]s}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %s
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", %q]
%s`, name, image, script, extra)
}
