// Command karman-cribench measures a CRI runtime for `make bench`
// (tests/bench/cri.sh), and compares two runtimes' results.
//
//	karman-cribench loop --endpoint unix:///PATH --image REF [--n 30] --out FILE.json
//	karman-cribench report DIR-A DIR-B
//
// loop pulls the image, then runs n times, one after the other, the pod
// lifecycle kubelet drives: RunPodSandbox, CreateContainer,
// StartContainer, StopContainer, RemoveContainer, StopPodSandbox,
// RemovePodSandbox, with a container of the image's own command (the pause
// look-alike, which exits on SIGTERM, so the 10 s grace period of
// StopContainer is never used up), and writes the durations. report reads DIR-A/loop.json and the JSON
// files critest's benchmarks wrote (--benchmarking-output-dir) in both
// directories and prints each figure of A beside B's, with A/B.
package main
