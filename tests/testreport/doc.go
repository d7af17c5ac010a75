// Package testreport reads the event stream of `go test -json` and writes
// what a reader of a CI log needs: the output of failed tests, each
// package's result line, and at the end a summary of every skipped test
// and why, sorted by the kind of skip:
//
//   - allowed: the test called testenv.SkipAllowed for a reason on the
//     allow-list (the host, not its set-up, lacks what it needs);
//   - missing prerequisite: testenv.Missing outside strict mode (in strict
//     mode those are failures);
//   - fuzz input: a fuzz target rejected one of its seed inputs;
//   - other: any other t.Skip. In strict mode such a skip fails the run
//     (Report.Err): a test may not skip silently in CI.
//
// Command tests/cmd/karman-testreport runs `go test -json` through it for
// `make test`.
package testreport
