//go:build !lemonade_goroutines

package proxy

import (
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

// A connection that stays quiet gets keep-alive probes on its backend
// socket too (its client socket inherits them from the listener), so a
// backend host that vanishes without a reset ends it; a busy one pays no
// syscall for it.
func TestQuietConnectionsGetKeepAliveOnTheBackendSocket(t *testing.T) {
	old := keepAliveSweep
	keepAliveSweep = 20 * time.Millisecond
	t.Cleanup(func() { keepAliveSweep = old })
	h := start(t, Settings{EventLoops: 1}, server(t, func(c net.Conn) { io.Copy(c, c) }))
	echo(t, dialClient(t, h.addr), "quiet from now on")
	e := h.srv.eng.(*loopEngine)
	probed := func() (on bool) {
		e.each(func(l *loop) {
			for _, c := range l.conns {
				v, err := syscall.GetsockoptInt(c.server, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
				idle, _ := syscall.GetsockoptInt(c.server, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
				on = err == nil && v == 1 && idle == int(keepAliveIdle/time.Second)
			}
		})
		return on
	}
	waitFor(t, probed)
}
