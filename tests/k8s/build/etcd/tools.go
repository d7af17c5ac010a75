//go:build tools

// Package etcd pins the etcd server that scripts/k8s-build.sh builds; it
// is never compiled.
package etcd

import _ "go.etcd.io/etcd/server/v3"
