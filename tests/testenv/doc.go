// Package testenv holds gates and helpers shared by Karman's tests.
//
// Gates: a test that cannot run on the host it finds calls Missing (or
// RequireRoot, RequireCommand, RequireFile), which skips it, or fails it in
// strict mode (Strict: $KARMAN_TEST_STRICT=1 or $CI=true, as under
// .ci/run), naming what to install; only a reason on the allow-list
// (Allowed, SkipAllowed) skips in strict mode too. Tests never call t.Skip
// directly for a missing prerequisite.
//
// Binary and Run build ./cmd/karman once per test process (or use
// $KARMAN_BINARY) and run it.
//
// The package imports only the standard library, so that the tests of
// every package of the module can use it without an import cycle.
package testenv
