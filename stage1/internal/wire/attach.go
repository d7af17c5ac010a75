package wire

// The attach socket (poddir.AttachSocket) is the supervisor's, which holds
// every app's stdio: a SOCK_SEQPACKET socket, one session per
// connection. The client's first packet is an AttachHello (JSON); the
// supervisor answers with an AttachReply (JSON) and, unless it carries
// an error, the session goes on in frames: one packet each, its first
// byte the channel, the rest the payload.
//
//	client -> supervisor: AttachStdin data, AttachResize (rows, cols:
//	                      two big-endian uint16), AttachClose (the
//	                      client's stdin ended)
//	supervisor -> client: AttachStdout data, AttachStderr data,
//	                      AttachEnd (the app's output ended), then EOF
const (
	AttachStdin  byte = 0
	AttachStdout byte = 1
	AttachStderr byte = 2
	AttachEnd    byte = 3
	AttachResize byte = 4
	AttachClose  byte = 5
)

// AttachHello opens an attach session to App; the booleans say which of
// its streams the client wants.
type AttachHello struct {
	App    string `json:"app"`
	Stdin  bool   `json:"stdin,omitempty"`
	Stdout bool   `json:"stdout,omitempty"`
	Stderr bool   `json:"stderr,omitempty"`
}

// AttachReply answers an AttachHello: TTY says the app's stdio is a
// terminal (its output comes as AttachStdout only), Stdin that the app
// has a stdin to write to.
type AttachReply struct {
	Error string `json:"error,omitempty"`
	TTY   bool   `json:"tty,omitempty"`
	Stdin bool   `json:"stdin,omitempty"`
}

// AttachFrame is the largest frame either side sends.
const AttachFrame = 32 << 10
