//go:build !lemonade_goroutines

package proxy

// Faults an adversarial review of the Linux engine found: each test failed
// while the bug it names was in the code. Real loopback sockets, no sleeps
// to synchronise (polls and deadlines), bounded.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childTestEnv names the test a re-executed test binary runs for real
// (one whose failure is a crash of the whole process).
const childTestEnv = "LEMONADE_PROXY_TEST_CHILD"

// inChild runs name's body in a child process (this test binary again) and
// fails t with the child's output if the child fails or crashes. It
// reports true in the child, where the caller runs the body itself.
func inChild(t *testing.T, name string) bool {
	if os.Getenv(childTestEnv) == name {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+name+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), childTestEnv+"="+name)
	out, err := cmd.CombinedOutput()
	if err != nil {
		lines := strings.Split(string(out), "\n")
		if len(lines) > 40 {
			lines = lines[:40]
		}
		t.Errorf("the balancer's process failed (%v):\n%s", err, strings.Join(lines, "\n"))
	}
	return false
}

// A loop that is at the connection cap (or out of descriptors) does not
// watch a listener added meanwhile, so its slots table never grows to that
// listener's descriptor; removing the listener then (a listen-address
// reload or a shutdown while still at the cap) indexes l.slots[ln.fd] out
// of range: the loop's goroutine panics and takes the whole balancer down.
func TestListenerAddedAndRemovedAtTheCapDoesNotCrash(t *testing.T) {
	const name = "TestListenerAddedAndRemovedAtTheCapDoesNotCrash"
	if !inChild(t, name) {
		return
	}
	h := start(t, Settings{EventLoops: 1, MaxConnections: 1}, server(t, func(c net.Conn) { io.Copy(c, c) }))
	e := h.srv.eng.(*loopEngine)
	first := dialClient(t, h.addr)
	echo(t, first, "the only slot")
	dialClient(t, h.addr) // waits in the backlog: the loop finds the cap
	waitFor(t, func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.capWaiters) == 1
	})
	var slots int
	e.each(func(l *loop) { slots = len(l.slots) })
	// Take every descriptor below the loop's table, so that the next
	// listener's is past its end.
	var held []*os.File
	t.Cleanup(func() {
		for _, f := range held {
			f.Close()
		}
	})
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		if int(f.Fd()) >= slots {
			f.Close() // the lowest free descriptor is now past the table
			break
		}
		held = append(held, f)
	}
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.srv.Serve(ctx, ln); close(done) }()
	// The listener is posted to the loop (at the cap: not watched).
	e.each(func(l *loop) {})
	cancel() // the loop removes it after the backlog grace
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

// A connection that passes a reset on stays in loop.lingering after it has
// closed, until the loop's next timer pass, which reset() scheduled 2 s
// (abortLinger) ahead: on a loop with no other timer, every reset of the
// last 2 s is held there (its *conn and all), and each pass walks them all.
func TestClosedConnectionsLeaveTheLingeringList(t *testing.T) {
	h := start(t, Settings{EventLoops: 1}, server(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(peerDeadline))
		io.ReadFull(c, make([]byte, 1))
		abort(c)
	}))
	const n = 50
	for range n {
		c := dialClient(t, h.addr)
		io.WriteString(c, "x")
		io.Copy(io.Discard, c) // the backend's reset
		c.Close()
	}
	waitEnded(t, h)
	var lingering, closed int
	h.srv.eng.(*loopEngine).each(func(l *loop) {
		lingering = len(l.lingering)
		for _, c := range l.lingering {
			if c.closed {
				closed++
			}
		}
	})
	if closed > 0 {
		t.Errorf("with every connection ended, the loop still holds %d connections in its lingering list (%d closed)", lingering, closed)
	}
}

// A backend at an IPv6 address with a zone ("[fe80::1%eth0]:80", "[::1%lo]")
// costs, per connection, a netlink dump of every interface on the event
// loop's thread: sockaddr calls backend.ScopeID, whose net.InterfaceByName
// opens a netlink socket and reads the whole link table, although
// sockaddr promises no allocation and ScopeID's doc asks callers to convert
// when the addresses change, not per connection. Besides the cost (a
// Kubernetes node has hundreds of interfaces), the netlink socket is a
// descriptor: out of descriptors it fails, sockaddr reports EINVAL ("a zone
// that is no interface here"), and the backend is blamed for a failed dial
// (passive health) instead of the client waiting for a descriptor.
func TestZonedAddressIsNotLookedUpPerConnection(t *testing.T) {
	srv := New(nil, nil, Settings{})
	l, err := newLoop(srv)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(l.epfd)
	defer syscall.Close(l.wakeFD)
	ap := netip.AddrPortFrom(netip.MustParseAddr("::1").WithZone(loopbackInterface(t)), 80)
	if _, _, _, e := l.sockaddr(ap); e != 0 {
		t.Fatalf("sockaddr(%s): %v", ap, e)
	}
	if n := testing.AllocsPerRun(20, func() { l.sockaddr(ap) }); n != 0 {
		t.Errorf("sockaddr(%s) allocates %.0f times per connection (an interface table read through netlink), want none", ap, n)
	}
}

// Out of descriptors, a client of a backend at a zoned IPv6 address is not
// kept waiting for a descriptor: the netlink socket sockaddr opens per
// connection (see above) is the first to fail, sockaddr reports EINVAL ("a
// zone that is no interface here"), and the backend takes the blame: a
// failed dial, passive health, marked down; the client is closed.
func TestOutOfDescriptorsAZonedBackendIsNotBlamed(t *testing.T) {
	const name = "TestOutOfDescriptorsAZonedBackendIsNotBlamed"
	if !inChild(t, name) {
		return
	}
	backendAddr := serverOn(t, "[::1]:0", func(c net.Conn) { c.SetDeadline(time.Now().Add(peerDeadline)); io.Copy(c, c) })
	_, port, _ := net.SplitHostPort(backendAddr)
	h := start(t, Settings{EventLoops: 1, Passive: markDownAtOnce}, "[::1%"+loopbackInterface(t)+"]:"+port)
	c := dialClient(t, h.addr)
	echo(t, c, "through the zoned backend")
	c.Close()
	waitEnded(t, h)

	// Leave exactly two descriptors: the next client's socket, and the one
	// the balancer accepts it on.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	dir, err := os.Open("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	names, err := dir.Readdirnames(-1)
	dirFD := int(dir.Fd())
	dir.Close()
	if err != nil {
		t.Fatal(err)
	}
	open := map[int]bool{}
	for _, n := range names {
		var fd int
		fmt.Sscan(n, &fd)
		if fd != dirFD {
			open[fd] = true
		}
	}
	free, limit := 0, 0
	for fd := 0; ; fd++ {
		if !open[fd] {
			free++
			if free == 3 {
				limit = fd
				break
			}
		}
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: uint64(limit), Max: lim.Max}); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		}
	}
	defer restore()
	c2, err := net.Dial("tcp", h.addr)
	if err != nil {
		restore()
		t.Fatalf("the client's own socket: %v", err)
	}
	defer c2.Close()
	waitUntil(t, "the balancer ran out of descriptors for the backend", func() bool {
		return h.srv.Stats().WaitedForDescriptors > 0 || !h.pool[0].Up() || h.srv.Stats().NoBackend > 0
	}, h.state)
	restore()
	if s := h.pool[0].Snapshot(); !s.Up || s.ConnectFailures != 0 {
		t.Errorf("out of descriptors, the backend was blamed: up %v, %d connect failures, reason %q; stats %+v", s.Up, s.ConnectFailures, s.LastReason, h.srv.Stats())
	}
}
