// Command karman-testreport runs a `go test -json` command and reports
// it for a CI log (package tests/testreport): the output of failed tests,
// each package's result, then a summary of every skipped test and why.
//
// Usage:
//
//	karman-testreport go test -json [flags] [packages]
//
// It exits with the command's status; if that is 0, with 1 when, in strict
// mode (testenv.Strict), a test skipped outside the allow-list.
package main
