// Package tests holds Karman's end-to-end tests: they drive the built
// karman binary exactly as a user would, against Debian's registry on
// loopback, real kernel features and real CNI plugins. Subpackages are the
// test support that every test reuses: testimage builds busybox images,
// testregistry runs registries, testenv gates root-only tests and finds the
// binary.
package tests
