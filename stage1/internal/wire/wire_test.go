package wire

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestRecvAfterPeerClosedUnread: a peer that sends its last message and
// exits without reading ours (an init whose setup failed while the
// supervisor was booting it) makes the kernel report ECONNRESET first;
// the message it sent is still read.
func TestRecvAfterPeerClosedUnread(t *testing.T) {
	c, peer, err := SocketPair()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := Send(c, &Message{T: MsgBoot, PodDir: "/p"}, nil); err != nil { // never read
		t.Fatal(err)
	}
	pc, err := FileConn(peer)
	if err != nil {
		t.Fatal(err)
	}
	if err := Send(pc, &Message{T: MsgError, Msg: "volume source /v: no such file or directory"}, nil); err != nil {
		t.Fatal(err)
	}
	pc.Close()
	buf, oob := make([]byte, MaxPacket), make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	m, _, _, err := Recv(c, buf, oob)
	if err != nil || m.T != MsgError || m.Msg != "volume source /v: no such file or directory" {
		t.Fatalf("got %+v, %v; want the peer's error message", m, err)
	}
	if _, _, _, err := Recv(c, buf, oob); !IsClosed(err) {
		t.Errorf("after the last message: %v, want the end", err)
	}
}
