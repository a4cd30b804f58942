package proxy

// Tests of behaviour both engines share that the contract suite does not
// cover: timeouts, retries, forced closes.

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
	"github.com/lemonade-lb/lemonade/loadbalancer/strategy"
)

func TestConnectTimeoutTriesAnotherBackend(t *testing.T) {
	stuck, live := stuckAddress(t), server(t, replyAfterEOF)
	h := start(t, Settings{Retries: 1, ConnectTimeout: 200 * time.Millisecond, Passive: markDownAtOnce}, stuck, live)
	begin := time.Now()
	c := dialClient(t, h.addr)
	io.WriteString(c, "x")
	c.CloseWrite()
	if reply, _ := io.ReadAll(c); string(reply) != "got 1 bytes: X" {
		t.Fatalf("reply %q", reply)
	}
	took := time.Since(begin)
	s := h.pool[0].Snapshot()
	if s.Up || s.ConnectFailures != 1 || !strings.Contains(s.LastReason, "timeout") {
		t.Fatalf("stuck backend %+v: want down after one timed-out dial", s)
	}
	if took < 150*time.Millisecond || took > 3*time.Second {
		t.Fatalf("served after %v: want just after the 200ms connect timeout", took)
	}
	t.Logf("measured: served by the other backend %v after connecting (connect_timeout 200ms); the stuck one marked down", took.Round(time.Millisecond))
}

// A reload that turns the idle timeout on reaches connections already open
// and idle, in a loop asleep with nothing else to do.
func TestIdleTimeoutSetLaterReachesOpenConnections(t *testing.T) {
	h := start(t, Settings{EventLoops: 1}, server(t, func(c net.Conn) { io.Copy(c, c) }))
	c := dialClient(t, h.addr)
	echo(t, c, "ping") // then the loop has nothing to do: it waits with no timer
	h.srv.SetSettings(Settings{EventLoops: 1, IdleTimeout: 100 * time.Millisecond})
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("idle connection still open after the idle timeout was set: %d, %v", n, err)
	}
}

// A client that reads slowly but steadily is not idle, even while nothing
// more comes from it: bytes moving toward it count as activity.
func TestSlowReaderIsNotIdle(t *testing.T) {
	const total = 1 << 20
	h := start(t, Settings{IdleTimeout: 500 * time.Millisecond}, server(t, func(c net.Conn) {
		c.Write(make([]byte, total))
		io.Copy(io.Discard, c)
	}))
	c := dialClient(t, h.addr)
	c.SetReadBuffer(4096)
	buf := make([]byte, 4096)
	for begin := time.Now(); time.Since(begin) < 1200*time.Millisecond; {
		if _, err := c.Read(buf); err != nil {
			t.Fatalf("closed after %v while reading steadily: %v", time.Since(begin), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A reload between two tries counts: the retry picks from the table in
// force, not from the one the client arrived under.
func TestRetryPicksFromTheCurrentTable(t *testing.T) {
	stuck, live := stuckAddress(t), server(t, replyAfterEOF)
	h := start(t, Settings{Retries: 2, ConnectTimeout: 300 * time.Millisecond}, stuck)
	c := dialClient(t, h.addr)
	io.WriteString(c, "x")
	c.CloseWrite()
	waitFor(t, func() bool { return h.pool[0].Active() == 1 }) // dialing the stuck one
	h.srv.SetTable(&Table{Backends: []*backend.Backend{backend.New(1, "new", live, 1)}, Strategy: &strategy.RoundRobin{}})
	h.pool[0].Drain() // as a reload does for a removed backend
	if reply, _ := io.ReadAll(c); string(reply) != "got 1 bytes: X" {
		t.Fatalf("reply %q (stats %+v): the new table has a live backend", reply, h.srv.Stats())
	}
}

// A drain's end (Backend.CloseAll) also ends a connection still dialing that
// backend, at once.
func TestCloseAllEndsAConnectionStillDialing(t *testing.T) {
	h := start(t, Settings{ConnectTimeout: 10 * time.Second}, stuckAddress(t))
	c := dialClient(t, h.addr)
	waitFor(t, func() bool { return h.pool[0].Active() == 1 })
	if n := h.srv.CloseBackend(h.pool[0]); n != 1 {
		t.Fatalf("CloseAll closed %d connections, want the dialing one", n)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client still connected after CloseAll: %v", err)
	}
	waitFor(t, func() bool { return h.pool[0].Active() == 0 && h.srv.Stats().Active == 0 })
}

// A backend that accepts and resets at once did connect: the client sees
// the reset (at its connect or its first read), and the backend is not
// marked down for a failed dial.
func TestBackendThatResetsAfterAcceptIsNotADialFailure(t *testing.T) {
	h := start(t, Settings{Passive: markDownAtOnce}, server(t, func(c net.Conn) { c.(*net.TCPConn).SetLinger(0) }))
	for i := range 30 {
		c, err := net.Dial("tcp", h.addr)
		if err == nil {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			_, err = io.Copy(io.Discard, c)
			c.Close()
		}
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("connection %d: %v, want the backend's reset passed on", i, err)
		}
	}
	if s := h.pool[0].Snapshot(); s.ConnectFailures != 0 || !s.Up {
		t.Fatalf("backend after 30 accepted-then-reset connections: %+v", s)
	}
}

func TestIdleTimeoutClosesQuietConnectionsOnly(t *testing.T) {
	const idle = 400 * time.Millisecond
	h := start(t, Settings{IdleTimeout: idle}, server(t, func(c net.Conn) { io.Copy(c, c) }))
	busy, quiet := dialClient(t, h.addr), dialClient(t, h.addr)
	echo(t, quiet, "q")
	// Traffic every 20ms (gaps far below the idle timeout even when the
	// machine is loaded) for twice the idle timeout.
	for begin := time.Now(); time.Since(begin) < 2*idle; {
		echo(t, busy, "b")
		time.Sleep(20 * time.Millisecond)
	}
	quiet.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := quiet.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("quiet connection still open: %d, %v", n, err)
	}
	echo(t, busy, "still here")
}

// The idle timeout closes a connection whose client stopped reading with
// bytes of the backend's still undelivered (in the loop's buffer and in
// the backend socket): the loop closes both sockets "cleanly", so the
// backend gets a reset (unread data) while the client gets a FIN after a
// truncated stream: a cut-off answer that looks complete.
func TestIdleTimeoutNeverEndsACutOffStreamWithAFIN(t *testing.T) { checkIdleCutIsAReset(t) }

// checkIdleCutIsAReset runs a backend writing to a client that reads
// nothing until the idle timeout has ended the connection, and checks the
// client sees a reset.
func checkIdleCutIsAReset(t *testing.T) {
	t.Helper()
	wrote := make(chan int64, 1)
	h := start(t, Settings{IdleTimeout: 100 * time.Millisecond}, server(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(peerDeadline))
		// Writes until it cannot: the client does not read.
		var n int64
		chunk := make([]byte, 1<<20)
		for {
			m, err := c.Write(chunk)
			n += int64(m)
			if err != nil {
				break
			}
		}
		wrote <- n
	}))
	// (No SetReadBuffer: under gVisor a socket closed with unsent bytes
	// stops sending to a peer with a small receive buffer.)
	c := dialClient(t, h.addr)
	// The client reads nothing until the balancer has given up on it.
	waitUntil(t, "the balancer proxies the connection", func() bool { return h.pool[0].Active() == 1 }, h.state)
	waitUntil(t, "the idle timeout ended the stalled connection", func() bool { return h.srv.Stats().Active == 0 }, h.state)
	got, err := io.Copy(io.Discard, c)
	backendWrote := <-wrote
	if err == nil {
		t.Errorf("the client got %d of the backend's %d bytes, then a clean EOF: a cut-off stream looks complete; want a reset", got, backendWrote)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the client's read stalled after %d bytes (backend wrote %d): %v", got, backendWrote, err)
	}
}

// Urgent data from the backend reaches the client inline (the Linux
// engine sets SO_OOBINLINE on a backend socket at its first urgent byte).
func TestUrgentDataFromTheBackendArrivesInline(t *testing.T) {
	sent := make(chan error, 1)
	h := start(t, Settings{}, server(t, func(c net.Conn) {
		io.ReadFull(c, make([]byte, 1)) // the client is connected
		if err := sendUrgent(c.(*net.TCPConn), []byte("abc!")); err != nil {
			sent <- err
			return
		}
		_, err := io.WriteString(c, "def")
		sent <- err
		io.Copy(io.Discard, c)
	}))
	c := dialClient(t, h.addr)
	c.Write([]byte{'x'})
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 7)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "abc!def" {
		t.Fatalf("client got %q, %v; want \"abc!def\", the urgent byte inline", got, err)
	}
}

// A client whose bytes never reach a backend (the only one cannot be
// reached) is reset, never closed with a FIN, which would say they were
// taken: a client that sends, half-closes and waits for EOF must not
// believe it delivered.
func TestNoBackendAfterTheClientSpokeIsAReset(t *testing.T) {
	h := start(t, Settings{ConnectTimeout: 300 * time.Millisecond}, stuckAddress(t))
	c := dialClient(t, h.addr)
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the client read %q, then %v; want a reset", got, err)
	}
	waitUntil(t, "the connection's slot frees", func() bool { return h.srv.Stats().Active == 0 }, h.state)
}

// hasUnread sees bytes waiting in a socket's receive queue, and only then;
// its peek takes nothing.
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
	raw, err := s.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	unread := func() (u bool) {
		raw.Control(func(fd uintptr) { u = hasUnread(int(fd)) })
		return u
	}
	if unread() {
		t.Fatal("unread bytes before any was sent")
	}
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return unread() })
	if n, err := s.Read(make([]byte, 4)); n != 1 || err != nil {
		t.Fatalf("read %d, %v: the peek consumed the byte", n, err)
	}
	if unread() {
		t.Fatal("unread bytes after the only one was read")
	}
}
