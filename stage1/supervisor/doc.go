// Package supervisor is the pod supervisor, karman-stage1 __stage1-run
// (Main, poddir.CmdRun): it holds the pod lock, reads pod.json
// (poddir.Load), forks the pod's init (forkInit, the one place that
// does), sends it its boot message, copies the apps' output to its own
// stdio and logs/<app>.log, records each app's status, turns signals into
// requests to the init, speaks sd_notify, and once the pod has ended
// records its exit status and undoes its network. See package stage1 for
// the process model.
package supervisor
