// Package testregistry runs container registries on the loopback interface
// for Karman's tests and benchmarks and pushes test images into them.
//
// InProcess serves go-containerregistry's in-memory registry from an
// httptest server; Distribution and StartDistribution run Debian's
// docker-registry (the CNCF distribution registry v2) as a child process with
// a generated configuration that listens on 127.0.0.1 only. Push and
// PushIndex upload over plain HTTP and refuse registries that are not on a
// loopback address.
package testregistry
