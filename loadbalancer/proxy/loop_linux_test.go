//go:build !lemonade_goroutines

package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
	"github.com/lemonade-lb/lemonade/loadbalancer/strategy"
)

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// After traffic, an idle proxied connection holds its two sockets and
// nothing else: no buffer, no pipe, no goroutine.
func TestIdleConnectionsHoldOnlyTheirSockets(t *testing.T) {
	h := start(t, Settings{}, server(t, func(c net.Conn) { io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c}) }))
	before, goroutines := openFDs(t), runtime.NumGoroutine()
	const n = 50
	for range n {
		echo(t, dialClient(t, h.addr), "ping")
	}
	// Per connection: the client, the balancer's two sockets, the backend's
	// (and the backend server's goroutine).
	if got := openFDs(t) - before; got > 4*n+4 {
		t.Fatalf("%d descriptors for %d idle connections, want at most %d", got, n, 4*n+4)
	}
	if got := runtime.NumGoroutine() - goroutines; got > n+4 {
		t.Fatalf("%d more goroutines for %d idle connections, want about %d (the test backend's)", got, n, n)
	}
}

// Many clients at once through several loops: every byte reaches the right
// client, and every loop ends when the server stops (goleak checks).
func TestManyConnectionsAcrossLoops(t *testing.T) {
	h := start(t, Settings{EventLoops: 3}, server(t, func(c net.Conn) { io.Copy(c, c) }))
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			msg := strings.Repeat(fmt.Sprintf("<%d>", i), 20000) // larger than one read
			go io.WriteString(c, msg)
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
				errs <- fmt.Errorf("client %d: %d bytes back, %v", i, len(got), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	e := h.srv.eng.(*loopEngine)
	e.mu.Lock()
	n := len(e.loops)
	e.mu.Unlock()
	if n != 3 {
		t.Fatalf("%d loops running, want 3", n)
	}
}

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
}

// A reload that turns the idle timeout on reaches connections already open
// and idle, in a loop asleep with nothing else to do.
func TestIdleTimeoutSetLaterReachesOpenConnections(t *testing.T) {
	h := start(t, Settings{EventLoops: 1}, server(t, func(c net.Conn) { io.Copy(c, c) }))
	c := dialClient(t, h.addr)
	echo(t, c, "ping")
	time.Sleep(200 * time.Millisecond)
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
	h := start(t, Settings{IdleTimeout: 300 * time.Millisecond}, server(t, func(c net.Conn) {
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
	h := start(t, Settings{IdleTimeout: 150 * time.Millisecond}, server(t, func(c net.Conn) { io.Copy(c, c) }))
	busy, quiet := dialClient(t, h.addr), dialClient(t, h.addr)
	echo(t, quiet, "q")
	for range 6 { // 360ms of traffic, longer than the idle timeout
		echo(t, busy, "b")
		time.Sleep(60 * time.Millisecond)
	}
	quiet.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := quiet.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("quiet connection still open: %d, %v", n, err)
	}
	echo(t, busy, "still here")
}

// One bulk transfer does not monopolise its loop: each flow moves at most
// its budget per turn, then the other ready connections go, so a small
// echo on the same loop keeps answering during the transfer.
func TestBulkTransferLeavesTheLoopToOthers(t *testing.T) {
	bulk := make([]byte, 1<<20)
	h := start(t, Settings{EventLoops: 1}, server(t, func(c net.Conn) {
		var first [1]byte
		if _, err := io.ReadFull(c, first[:]); err != nil {
			return
		}
		if first[0] != 'B' {
			c.Write(first[:])
			io.Copy(c, c) // echo
			return
		}
		for range 64 { // 64 MiB to a client that reads all it can
			if _, err := c.Write(bulk); err != nil {
				return
			}
		}
	}))
	bc := dialClient(t, h.addr)
	bc.SetDeadline(time.Now().Add(60 * time.Second))
	bc.Write([]byte{'B'})
	done := make(chan int64, 1)
	go func() { n, _ := io.Copy(io.Discard, bc); done <- n }()
	ec := dialClient(t, h.addr)
	var pings int
	for transferring := true; transferring; pings++ {
		echo(t, ec, "p")
		select {
		case n := <-done:
			if n != 64<<20 {
				t.Fatalf("bulk client got %d bytes, want %d", n, 64<<20)
			}
			transferring = false
		default:
		}
	}
	var longest int
	h.srv.eng.(*loopEngine).each(func(l *loop) { longest = max(longest, l.longestTurn) })
	if longest == 0 || longest > turnBudget {
		t.Fatalf("one flow moved %d bytes in a turn, want at most the budget %d", longest, turnBudget)
	}
	t.Logf("%d echoes during the transfer; longest turn %d bytes", pings, longest)
}

// A freed slot at the connection cap wakes one waiting loop, not all.
func TestFreedSlotWakesOneLoop(t *testing.T) {
	h := start(t, Settings{EventLoops: 4, MaxConnections: 1}, server(t, func(c net.Conn) { io.Copy(c, c) }))
	e := h.srv.eng.(*loopEngine)
	first := dialClient(t, h.addr)
	echo(t, first, "1")
	var waiting []*net.TCPConn
	for range 3 {
		waiting = append(waiting, dialClient(t, h.addr))
	}
	// Each loop the listener woke found the cap and waits for a slot.
	waitFor(t, func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.capWaiters) > 0
	})
	before := e.capWakes.Load()
	first.Close()
	echo(t, waiting[0], "2")
	if got := e.capWakes.Load() - before; got != 1 {
		t.Fatalf("one freed slot woke %d loops, want 1", got)
	}
	for i, c := range waiting[1:] { // and the others are served in turn
		waiting[i].Close()
		echo(t, c, "3")
	}
}

// Accepted sockets inherit the listener's options: no per-connection
// setsockopt, and urgent data that arrives before the accept stays inline.
func TestAcceptedSocketsInheritTheListenersOptions(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fd, err := takeListener(ln)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	nfd, _, err := syscall.Accept(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(nfd)
	for _, o := range []struct {
		name         string
		level, value int
		want         int
	}{
		{"TCP_NODELAY", syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1},
		{"SO_OOBINLINE", syscall.SOL_SOCKET, syscall.SO_OOBINLINE, 1},
		{"SO_KEEPALIVE", syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, int(keepAliveIdle / time.Second)},
	} {
		v, err := syscall.GetsockoptInt(nfd, o.level, o.value)
		if err != nil || v != o.want {
			t.Errorf("accepted socket: %s = %d, %v; want %d", o.name, v, err, o.want)
		}
	}
}
