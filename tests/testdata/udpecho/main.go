// Command udpecho answers every UDP datagram on the port given as its
// argument with "echo:" and the datagram, for the port forwarding tests
// (busybox has no UDP server). It exits after 60 seconds.
package main

import (
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: udpecho PORT")
		os.Exit(2)
	}
	c, err := net.ListenPacket("udp", ":"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	fmt.Println("listening")
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		c.WriteTo(append([]byte("echo:"), buf[:n]...), from)
	}
}
