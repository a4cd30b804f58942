//go:build (unix && !linux) || lemonade_goroutines

package proxy

import (
	"net"
	"testing"
)

// The flow that times out first may be the quiet one (reading a client that
// sends nothing), not the one stuck writing to a client that stopped
// reading: the connection still ends with a reset, since bytes are held.
func TestIdleCutIsAResetWhicheverFlowTimesOutFirst(t *testing.T) {
	// The stalled write counts the connection idle half an idle timeout
	// late: the quiet read (an eighth late) decides.
	writeSlackEighths.Store(4)
	defer writeSlackEighths.Store(0)
	checkIdleCutIsAReset(t)
}

// hasUnread sees bytes waiting in a socket's receive queue, and only then.
func TestHasUnread(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	raw := rawConn(s.(*net.TCPConn))
	if hasUnread(raw) {
		t.Fatal("unread bytes before any was sent")
	}
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return hasUnread(raw) })
	if n, err := s.Read(make([]byte, 4)); n != 1 || err != nil {
		t.Fatalf("read %d, %v: the peek consumed the byte", n, err)
	}
	if hasUnread(raw) {
		t.Fatal("unread bytes after the only one was read")
	}
}
