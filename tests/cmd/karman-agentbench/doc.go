// Command karman-agentbench is the load side of tests/bench/agent.sh: it
// launches N tasks concurrently through a karman agent's API until all
// run, measures the launch rate and, during that storm, the latency of
// GET /v1/node, prints the figures as JSON, and deletes its tasks.
package main
