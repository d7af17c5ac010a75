// Package tests holds Karman's end-to-end tests: they drive the built
// karman binary exactly as a user would, against Debian's registry on
// loopback, real kernel features and real CNI plugins. Subpackages are the
// test support that every test reuses: testimage builds busybox images,
// testregistry runs registries, testenv gates tests on their prerequisites
// (strict under CI: a missing one fails) and finds the binary, testreport
// summarises a `go test -json` run and its skips, leakcheck compares what
// karman can leave on the host before and after a test, pagecache checks
// with cachestat(2) that a file's data is on disk.
package tests
