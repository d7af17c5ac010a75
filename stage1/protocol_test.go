package stage1

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestRecvAfterPeerClosedUnread: a peer that sends its last message and
// exits without reading ours (an init whose setup failed while the
// supervisor was booting it) makes the kernel report ECONNRESET first;
// the message it sent is still read.
func TestRecvAfterPeerClosedUnread(t *testing.T) {
	c, peer, err := socketPair()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := sendMsg(c, &message{T: msgBoot, PodDir: "/p"}, nil); err != nil { // never read
		t.Fatal(err)
	}
	pc, err := fileConn(peer)
	if err != nil {
		t.Fatal(err)
	}
	if err := sendMsg(pc, &message{T: msgError, Msg: "volume source /v: no such file or directory"}, nil); err != nil {
		t.Fatal(err)
	}
	pc.Close()
	buf, oob := make([]byte, maxPacket), make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	m, _, _, err := recvMsg(c, buf, oob)
	if err != nil || m.T != msgError || m.Msg != "volume source /v: no such file or directory" {
		t.Fatalf("got %+v, %v; want the peer's error message", m, err)
	}
	if _, _, _, err := recvMsg(c, buf, oob); !isClosed(err) {
		t.Errorf("after the last message: %v, want the end", err)
	}
}
