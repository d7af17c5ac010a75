// Package wire is what the supervisor, the pod init and stage1's client
// side say to each other: the messages on the supervisor's socket pair
// (Message, Send, Recv, SendWithFDs), the requests and replies on the
// init's control socket (CtlRequest, CtlReply), the slog handler that
// ships the init's records to the supervisor (SockHandler), and the
// small descriptor helpers they share. It is internal to stage1: the
// contract with stage0 is package poddir.
package wire
