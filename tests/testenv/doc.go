// Package testenv holds gates and helpers shared by Karman's end-to-end
// tests: RequireRoot, and Binary/Run, which build ./cmd/karman once per test
// process (or use $KARMAN_BINARY) and run it.
package testenv
