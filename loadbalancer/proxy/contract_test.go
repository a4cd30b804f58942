package proxy

// The engines' promise (docs/architecture.md, "The pieces": the engine),
// tested with real peers on loopback that inject the faults a proxy meets:
// resets with bytes before them, resets on a side nobody reads, urgent
// data, a backend that never answers the handshake, slow readers. This file
// has no build tag: it runs against the Linux event loops and, with -tags
// lemonade_goroutines, against the goroutine engine. Nothing here sleeps to
// synchronise: each test waits for an event (a read's result, a channel, a
// counter polled with a deadline), and every connection has a deadline, so
// a broken engine fails a test, it never hangs it.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
	"github.com/lemonade-lb/lemonade/loadbalancer/strategy"
)

// peerDeadline bounds every connection of these tests.
const peerDeadline = 10 * time.Second

// abort resets c: SO_LINGER 0, then close sends an RST.
func abort(c net.Conn) {
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// describe names how a read ended, for failure messages.
func describe(err error) string {
	switch {
	case err == nil || err == io.EOF:
		return "a clean end (EOF)"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "nothing until the deadline (a stall)"
	}
	return err.Error()
}

// sendUrgent writes b as TCP urgent data (send with MSG_OOB): its last byte
// is the urgent byte.
func sendUrgent(c *net.TCPConn, b []byte) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Write(func(fd uintptr) bool {
		for len(b) > 0 {
			n, e := syscall.SendmsgN(int(fd), b, nil, nil, syscall.MSG_OOB)
			switch e {
			case nil:
				b = b[n:]
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false // wait until writable
			default:
				serr = e
				return true
			}
		}
		return true
	})
	if err != nil {
		return err
	}
	return serr
}

// descriptors is how many descriptors this process holds (Linux), or -1.
func descriptors() int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(entries)
}

// waitUntil polls cond until it holds; after 5s it fails the test with
// what and, if state is not nil, state().
func waitUntil(t *testing.T, what string, cond func() bool, state func() string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			msg := "after 5s, still not: " + what
			if state != nil {
				msg += " (" + state() + ")"
			}
			t.Fatal(msg)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (h *harness) state() string {
	var b strings.Builder
	fmt.Fprintf(&b, "stats %+v; backends active", h.srv.Stats())
	for _, x := range h.pool {
		fmt.Fprintf(&b, " %d", x.Active())
	}
	fmt.Fprintf(&b, "; descriptors %d", descriptors())
	return b.String()
}

// settle routes one connection through h to a throwaway backend and back,
// so that whatever the engine creates once (its loops) exists, and returns
// the descriptors held then: the level every test returns to.
func settle(t *testing.T, h *harness) int {
	t.Helper()
	done := make(chan struct{})
	probe := backend.New(99, "probe", server(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(peerDeadline))
		io.Copy(c, c)
		c.Close()
		close(done)
	}), 1)
	h.srv.SetTable(&Table{Backends: []*backend.Backend{probe}, Strategy: &strategy.RoundRobin{}})
	c := dialClient(t, h.addr)
	echo(t, c, "probe")
	c.CloseWrite()
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("probe connection: %q, %v", rest, err)
	}
	c.Close()
	select {
	case <-done:
	case <-time.After(peerDeadline):
		t.Fatal("the probe backend never saw its client's end")
	}
	h.srv.SetTable(&Table{Backends: h.pool, Strategy: &strategy.RoundRobin{}})
	waitUntil(t, "the probe connection ended", func() bool {
		return h.srv.Stats().Active == 0 && probe.Active() == 0
	}, h.state)
	return descriptors()
}

// waitEnded waits until h has no connection open and its backends none.
func waitEnded(t *testing.T, h *harness) {
	t.Helper()
	waitUntil(t, "every connection ended (Stats().Active == 0, every backend's Active() == 0)", func() bool {
		if h.srv.Stats().Active != 0 {
			return false
		}
		for _, b := range h.pool {
			if b.Active() != 0 {
				return false
			}
		}
		return true
	}, h.state)
}

// waitDescriptors waits until the process holds no more descriptors than
// base (the test's own connections closed).
func waitDescriptors(t *testing.T, h *harness, base int) {
	t.Helper()
	if base < 0 {
		return // no /proc/self/fd here
	}
	waitUntil(t, fmt.Sprintf("descriptors back to %d", base), func() bool { return descriptors() <= base }, h.state)
}

// checkAborts checks that the reset of want connections was counted.
func checkAborts(t *testing.T, h *harness, want uint64) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("Stats().Aborts == %d", want), func() bool { return aborts(h.srv) == want }, h.state)
}

func aborts(s *Server) uint64 { return s.Stats().Aborts }

// --------------------------------------------------------------- streams

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// streamFill puts in p the bytes at offsets off, off+1, ... of the stream
// named key: the same bytes each time, so that a receiver checks what it
// gets without a copy of what was sent.
func streamFill(key uint64, off int64, p []byte) {
	for i := 0; i < len(p); {
		pos := off + int64(i)
		w := splitmix(key + uint64(pos>>3))
		for j := pos & 7; j < 8 && i < len(p); j++ {
			p[i] = byte(w >> (8 * j))
			i++
		}
	}
}

// checker checks a received stream byte by byte against fill.
type checker struct {
	fill func(off int64, p []byte)
	got  int64
	want []byte
	bad  string // the first wrong byte
}

func (k *checker) take(p []byte) bool {
	if k.bad != "" {
		return false
	}
	if cap(k.want) < len(p) {
		k.want = make([]byte, len(p))
	}
	w := k.want[:len(p)]
	k.fill(k.got, w)
	if !bytes.Equal(p, w) {
		for i := range p {
			if p[i] != w[i] {
				k.bad = fmt.Sprintf("byte %d is %#02x, want %#02x", k.got+int64(i), p[i], w[i])
				break
			}
		}
		return false
	}
	k.got += int64(len(p))
	return true
}

// --------------------------------------------------------------- resets

// A backend that answers early (a 413 to a large upload) and closes with
// the upload unread makes its kernel reset the connection. The answer is
// in the balancer's receive queue before the reset: it must reach the
// client whole, before the end. (An engine that aborts at the failed send
// of the upload, or passes the reset on without reading first, loses it.)
func TestContractEarlyAnswerBeforeResetIsDelivered(t *testing.T) {
	const answer = "HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
	addr := server(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(peerDeadline))
		io.ReadFull(c, make([]byte, 1024))
		io.WriteString(c, answer)
		// Returning closes c with the rest of the upload unread: an RST.
	})
	body := make([]byte, 8<<20)
	// try uploads body to addr and reads the answer, then the end (a reset
	// or EOF, not more bytes, not a stall).
	try := func(addr string) (got string, err error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		uploaded := make(chan struct{})
		go func() { defer close(uploaded); c.Write(body) }() // fails at the reset
		buf := make([]byte, len(answer))
		n, err := io.ReadFull(c, buf)
		if err == nil {
			var m int
			m, err = c.Read(make([]byte, 1))
			switch {
			case m > 0:
				err = errors.New("bytes after the answer")
			case err == io.EOF || isReset(err):
				err = nil
			default:
				err = fmt.Errorf("after the answer: %s", describe(err))
			}
		}
		c.Close()
		<-uploaded
		return string(buf[:n]), err
	}
	const rounds = 20
	for i := range rounds { // the test itself: without a proxy, it always works
		if got, err := try(addr); got != answer || err != nil {
			t.Fatalf("test setup: directly to the backend, round %d: %q, %v", i, got, err)
		}
	}
	h := start(t, Settings{}, addr)
	whole, lost := 0, []string{}
	for i := range rounds {
		got, err := try(h.addr)
		if got == answer && err == nil {
			whole++
			continue
		}
		lost = append(lost, fmt.Sprintf("round %d: %d of %d bytes, %v", i, len(got), len(answer), err))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break // a stall: no need to wait 5s more times
		}
	}
	if whole != rounds {
		t.Errorf("the early answer reached the client whole %d of %d times; %s", whole, rounds, strings.Join(lost, "; "))
	}
	waitEnded(t, h)
	t.Logf("measured: the early answer arrived whole %d of %d times", whole, rounds)
}

// A backend that resets after some bytes: the client gets those bytes, then
// a reset, not a clean end: a cut-off answer must not look complete.
func TestContractBackendResetArrivesAsResetAfterItsBytes(t *testing.T) {
	const msg = "the first half of an answer"
	h := start(t, Settings{}, server(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(peerDeadline))
		// After the client's request: a reset before its connect returns
		// would fail the dial itself.
		io.ReadFull(c, make([]byte, 3))
		io.WriteString(c, msg)
		abort(c)
	}))
	base := settle(t, h)
	c := dialClient(t, h.addr)
	io.WriteString(c, "GET")
	got, err := io.ReadAll(c)
	if string(got) != msg || !isReset(err) {
		t.Errorf("client got %q then %s; want %q then a reset (ECONNRESET)", got, describe(err), msg)
	}
	c.Close()
	waitEnded(t, h)
	waitDescriptors(t, h, base)
	checkAborts(t, h, 1)
}

// A client that resets after some bytes: the backend gets those bytes, then
// a reset, not a clean end: a cut-off request must not look complete.
func TestContractClientResetArrivesAsResetAfterItsBytes(t *testing.T) {
	const msg = "the first half of a request"
	type result struct {
		got []byte
		err error
	}
	seen := make(chan result, 1)
	h := start(t, Settings{}, server(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(peerDeadline))
		io.WriteString(c, "ready\n")
		got, err := io.ReadAll(c)
		seen <- result{got, err}
	}))
	base := settle(t, h)
	c := dialClient(t, h.addr)
	if _, err := io.ReadFull(c, make([]byte, 6)); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	io.WriteString(c, msg)
	abort(c)
	select {
	case r := <-seen:
		if string(r.got) != msg || !isReset(r.err) {
			t.Errorf("backend got %q then %s; want %q then a reset (ECONNRESET)", r.got, describe(r.err), msg)
		}
	case <-time.After(peerDeadline):
		t.Fatal("the backend's read never ended")
	}
	waitEnded(t, h)
	waitDescriptors(t, h, base)
	checkAborts(t, h, 1)
}

// The client half-closes, the backend reads the end, then resets while
// nothing moves and the client does nothing: the connection ends at once
// (no idle timeout to clean up after the engine), and the client, which
// still reads, sees the reset.
func TestContractBackendResetAfterClientHalfCloseEndsTheConnection(t *testing.T) {
	readEOF := make(chan error, 1)
	h := start(t, Settings{}, server(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(peerDeadline))
		_, err := io.Copy(io.Discard, c)
		readEOF <- err
		abort(c)
	}))
	base := settle(t, h)
	c := dialClient(t, h.addr)
	io.WriteString(c, "request")
	c.CloseWrite()
	select {
	case err := <-readEOF:
		if err != nil {
			t.Fatalf("backend read %s, want the client's half-close", describe(err))
		}
	case <-time.After(peerDeadline):
		t.Fatal("the client's half-close never reached the backend")
	}
	waitEnded(t, h)
	if n, err := c.Read(make([]byte, 1)); n != 0 || !isReset(err) {
		t.Errorf("client read %d bytes, %s; want the backend's reset", n, describe(err))
	}
	c.Close()
	waitDescriptors(t, h, base)
	checkAborts(t, h, 1)
}

// The backend half-closes, the client reads the end, then resets while
// nothing moves: the connection ends at once, and the backend, which still
// reads, sees the reset.
func TestContractClientResetAfterBackendHalfCloseEndsTheConnection(t *testing.T) {
	seen := make(chan error, 1)
	h := start(t, Settings{}, server(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(peerDeadline))
		io.WriteString(c, "bye")
		c.(*net.TCPConn).CloseWrite()
		_, err := io.Copy(io.Discard, c)
		seen <- err
	}))
	base := settle(t, h)
	c := dialClient(t, h.addr)
	if got, err := io.ReadAll(c); string(got) != "bye" || err != nil {
		t.Fatalf("client got %q, %v; want the backend's bytes and half-close", got, err)
	}
	abort(c)
	waitEnded(t, h)
	select {
	case err := <-seen:
		if !isReset(err) {
			t.Errorf("backend read %s; want the client's reset", describe(err))
		}
	case <-time.After(peerDeadline):
		t.Fatal("the backend's read never ended")
	}
	waitDescriptors(t, h, base)
	checkAborts(t, h, 1)
}

// The client stops reading while the backend writes: the flow to it waits
// behind a full receiver, and nobody reads the backend's socket. Then the
// backend resets: the connection ends at once (what waited for the client
// is dropped: it would wait forever), and the client sees what came before,
// in order, then the reset.
func TestContractBackendResetBehindAFullClientEndsTheConnection(t *testing.T) {
	const key = 7
	var sent atomic.Int64
	h := start(t, Settings{}, server(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(peerDeadline))
		chunk := make([]byte, 64<<10)
		for {
			streamFill(key, sent.Load(), chunk)
			// A write that cannot finish in 300ms: the flow is stuck.
			c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
			n, err := c.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				break
			}
		}
		abort(c)
	}))
	base := settle(t, h)
	c := dialClient(t, h.addr)
	c.SetReadBuffer(4096)
	waitEnded(t, h) // the backend's write stalls, it resets; nobody else acts
	k := &checker{fill: func(off int64, p []byte) { streamFill(key, off, p) }}
	buf := make([]byte, 64<<10)
	var err error
	for {
		var n int
		n, err = c.Read(buf)
		if !k.take(buf[:n]) {
			t.Fatalf("client got wrong bytes from the backend: %s", k.bad)
		}
		if err != nil {
			break
		}
	}
	if !isReset(err) {
		t.Errorf("client got %d of the backend's %d bytes, then %s; want a reset", k.got, sent.Load(), describe(err))
	}
	c.Close()
	waitDescriptors(t, h, base)
	checkAborts(t, h, 1)
}

// --------------------------------------------------------------- urgent data

// A client that sends TCP urgent data (telnet's interrupt, old FTP
// clients): every byte reaches the backend and back, the urgent one inline,
// with the bytes sent after it in the same burst. (A receiver without
// SO_OOBINLINE loses the urgent byte, and a read stops short at it: an
// engine that takes a short read for an empty socket stalls.)
func TestContractUrgentDataArrivesInline(t *testing.T) {
	h := start(t, Settings{}, server(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(peerDeadline))
		io.Copy(c, c)
	}))
	c := dialClient(t, h.addr)
	echo(t, c, "hello")
	for round := range 3 {
		head := strings.Repeat(string(rune('a'+round)), 100) + "!" // '!': the urgent byte
		tail := strings.Repeat(string(rune('A'+round)), 100)
		if err := sendUrgent(c, []byte(head)); err != nil {
			t.Fatalf("round %d: send urgent: %v", round, err)
		}
		if _, err := io.WriteString(c, tail); err != nil {
			t.Fatalf("round %d: send: %v", round, err)
		}
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		got := make([]byte, len(head)+len(tail))
		n, err := io.ReadFull(c, got)
		if err != nil || string(got) != head+tail {
			t.Fatalf("round %d: %d of %d bytes came back (urgent byte among them: %v), then %s; want every byte, the urgent one inline",
				round, n, len(got), bytes.IndexByte(got[:n], '!') >= 0, describe(err))
		}
	}
}

// Urgent data that comes while the client waits in the backlog (here its
// first byte urgent, then more urgent data) is delivered inline too. The
// kernel takes the first urgent byte out of the stream when the second
// urgent data arrives, unless the socket keeps urgent data inline by then:
// set after accept, SO_OOBINLINE comes too late; the accepted socket must
// inherit it from its listener.
func TestContractUrgentDataBeforeAcceptArrivesInline(t *testing.T) {
	h := start(t, Settings{MaxConnections: 1}, server(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(peerDeadline))
		io.Copy(c, c)
	}))
	first := dialClient(t, h.addr)
	echo(t, first, "the only slot")
	// An engine may hold one accepted client while it waits for a slot:
	// filler is that one, c waits in the kernel's backlog.
	filler := dialClient(t, h.addr)
	c := dialClient(t, h.addr)
	for _, part := range []string{"A", "bcd", "efG", "hij"} {
		var err error
		if part[len(part)-1] >= 'A' && part[len(part)-1] <= 'Z' {
			err = sendUrgent(c, []byte(part)) // "A" and "G" urgent
		} else {
			_, err = io.WriteString(c, part)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "the balancer's kernel took the client's bytes", func() bool { return unacked(t, c) == 0 }, h.state)
	first.Close()
	echo(t, filler, "next")
	filler.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	got := make([]byte, len("AbcdefGhij"))
	n, err := io.ReadFull(c, got)
	if string(got[:n]) != "AbcdefGhij" {
		t.Fatalf("%q came back, then %s; want \"AbcdefGhij\": every byte, the urgent ones inline", got[:n], describe(err))
	}
}

// unacked is how many bytes c sent that its peer's kernel has not
// acknowledged (SIOCOUTQ).
func unacked(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int32
	var e syscall.Errno
	rc.Control(func(fd uintptr) {
		_, _, e = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&n)))
	})
	if e != 0 {
		t.Fatalf("SIOCOUTQ: %v", e)
	}
	return int(n)
}

// --------------------------------------------------------------- dialing

// A client that leaves (resets) while its backend is being dialed ends its
// connection at once, not when the connect times out; and the dial it no
// longer needs is no failure of the backend's.
func TestContractDialIsAbandonedWhenTheClientLeaves(t *testing.T) {
	h := start(t, Settings{ConnectTimeout: 30 * time.Second}, stuckAddress(t))
	base := settle(t, h)
	accepted := h.srv.Stats().Accepted

	// Reset once the dial is under way.
	c := dialClient(t, h.addr)
	waitUntil(t, "the balancer dials the backend", func() bool { return h.pool[0].Active() == 1 }, h.state)
	abort(c)
	waitEnded(t, h)

	// Reset at once, before the balancer even accepts.
	c = dialClient(t, h.addr)
	abort(c)
	waitUntil(t, "the balancer accepts the reset client", func() bool { return h.srv.Stats().Accepted == accepted+2 }, h.state)
	waitEnded(t, h)

	if s := h.pool[0].Snapshot(); s.ConnectFailures != 0 || !s.Up {
		t.Errorf("backend after two abandoned dials: %d connect failures, up %v; want none, up", s.ConnectFailures, s.Up)
	}
	waitDescriptors(t, h, base)
}

// --------------------------------------------------------------- random

var contractSeed = flag.Uint64("contract.seed", 0, "seed of TestContractRandomPeersKeepThePromise (0: from the clock)")

type backendKind int

const (
	kindEcho       backendKind = iota // echoes, half-closes after the client's end
	kindHalfClose                     // answers and half-closes while reading the client to the end
	kindResetAfter                    // answers (maybe half-closes), reads some, resets
	kindSlowReader                    // reads slowly to the end, then answers and half-closes
)

func (k backendKind) String() string {
	return [...]string{"echo", "half-close", "reset", "slow reader"}[k]
}

// randomPlan is what both peers of one connection do.
type randomPlan struct {
	id              uint64
	upKey, downKey  uint64 // the streams each way (echo: up both ways)
	rng             uint64 // seeds the write sizes
	upLen           int    // the client's bytes, its 8-byte id first
	upChunk         int    // the client's largest write
	urgent          int    // how many of the client's writes are urgent data
	clientResetAt   int    // the client resets after sending this many bytes; -1: no
	clientResetRecv int    // the client resets once this many bytes came back; -1: no
	kind            backendKind
	downLen         int  // the backend's bytes (not echo)
	downChunk       int  // the backend's largest write
	finFirst        bool // kindResetAfter: half-close before the reset
	resetRecv       int  // kindResetAfter: reset once this many client bytes came
}

func newRandomPlan(rng *rand.Rand, seed uint64, id int) *randomPlan {
	p := &randomPlan{
		id:              uint64(id),
		upKey:           splitmix(seed ^ uint64(id)<<1),
		downKey:         splitmix(seed ^ (uint64(id)<<1 | 1)),
		rng:             rng.Uint64(),
		clientResetAt:   -1,
		clientResetRecv: -1,
		kind:            backendKind(rng.IntN(4)),
	}
	size := func() (n, chunk int) {
		if rng.IntN(10) < 6 {
			return rng.IntN(4000), 1 + rng.IntN(64) // tiny writes
		}
		return rng.IntN(1 << 20), 1 + rng.IntN(128<<10) // bulk
	}
	n, chunk := size()
	if p.kind == kindSlowReader {
		n = min(n, 256<<10)
	}
	p.upLen, p.upChunk = 8+n, chunk
	if rng.IntN(5) == 0 {
		p.urgent = 1 + rng.IntN(3)
	}
	switch rng.IntN(6) {
	case 0:
		p.clientResetAt = rng.IntN(p.upLen + 1)
	case 1:
		p.clientResetRecv = 1 + rng.IntN(8<<10)
	}
	p.downLen, p.downChunk = size()
	if p.kind == kindResetAfter {
		p.finFirst = rng.IntN(2) == 0
		p.resetRecv = rng.IntN(p.upLen + 1)
	}
	return p
}

// upFill is the client's stream: its id, then bytes of upKey.
func (p *randomPlan) upFill(off int64, b []byte) {
	streamFill(p.upKey, off, b)
	var id [8]byte
	binary.LittleEndian.PutUint64(id[:], p.id)
	for i := 0; i < len(b) && off+int64(i) < 8; i++ {
		b[i] = id[off+int64(i)]
	}
}

func (p *randomPlan) downFill(off int64, b []byte) {
	if p.kind == kindEcho {
		p.upFill(off, b)
		return
	}
	streamFill(p.downKey, off, b)
}

// peerLog is what one peer did and saw.
type peerLog struct {
	sent     int64
	fin      bool  // half-closed after sending everything
	reset    bool  // reset the connection itself
	writeErr error // a write failed (not after its own reset)
	got      int64
	readEnd  error // how reading ended: nil = EOF
	stopped  bool  // it stopped reading itself (its reset): readEnd not judged
	bad      string
}

// peer is one end of a connection, written to and read at once.
type peer struct {
	c   *net.TCPConn
	mu  sync.Mutex
	log peerLog
}

func (p *peer) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.log.reset {
		p.log.reset = true
		abort(p.c)
	}
}

// send writes bytes [from, to) of the stream fill in writes of up to chunk
// bytes, urgent of them as urgent data; false if a write failed.
func (p *peer) send(fill func(int64, []byte), from, to, chunk int, rng *rand.Rand, urgent *int) bool {
	buf := make([]byte, min(chunk, max(to-from, 1)))
	for off := from; off < to; {
		n := min(1+rng.IntN(chunk), to-off)
		b := buf[:n]
		fill(int64(off), b)
		var err error
		// Never the first byte: see TestContractUrgentDataBeforeAcceptArrivesInline.
		if *urgent > 0 && off > 0 && n <= 256 && rng.IntN(3) == 0 {
			*urgent--
			err = sendUrgent(p.c, b)
		} else {
			_, err = p.c.Write(b)
		}
		p.mu.Lock()
		if err != nil {
			if !p.log.reset {
				p.log.writeErr = err
			}
			p.mu.Unlock()
			return false
		}
		p.log.sent += int64(n)
		p.mu.Unlock()
		off += n
	}
	return true
}

func (p *peer) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.log.reset {
		return
	}
	if err := p.c.CloseWrite(); err != nil {
		p.log.writeErr = err
		return
	}
	p.log.fin = true
}

// read reads to the end, checking every byte; after each read, stop says
// whether to reset now. slow makes it a slow reader.
func (p *peer) read(k *checker, stop func(got int64) bool, slow bool) {
	buf := make([]byte, 32<<10)
	if slow {
		buf = buf[:4<<10]
	}
	for i := 0; ; i++ {
		n, err := p.c.Read(buf)
		ok := k.take(buf[:n])
		if ok && err == nil && (stop == nil || !stop(k.got)) {
			if slow && i%4 == 3 {
				time.Sleep(200 * time.Microsecond) // a slow application, not a synchronisation
			}
			continue
		}
		p.mu.Lock()
		p.log.got, p.log.bad, p.log.readEnd = k.got, k.bad, err
		if err == io.EOF {
			p.log.readEnd = nil
		}
		quit := err == nil || !ok // stop said so, or a wrong byte
		p.log.stopped = p.log.reset || quit
		p.mu.Unlock()
		if quit {
			p.reset()
		}
		return
	}
}

func (p *peer) result() peerLog {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log
}

func runRandomClient(addr string, p *randomPlan) peerLog {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return peerLog{bad: "dial: " + err.Error()}
	}
	nc.SetDeadline(time.Now().Add(peerDeadline))
	c := &peer{c: nc.(*net.TCPConn)}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		rng := rand.New(rand.NewPCG(p.rng, 1))
		urgent := p.urgent
		to := p.upLen
		if p.clientResetAt >= 0 {
			to = p.clientResetAt
		}
		if !c.send(p.upFill, 0, to, p.upChunk, rng, &urgent) {
			return
		}
		if p.clientResetAt >= 0 {
			c.reset()
			return
		}
		c.finish()
	}()
	var stop func(int64) bool
	if p.clientResetRecv >= 0 {
		stop = func(got int64) bool { return got >= int64(p.clientResetRecv) }
	}
	c.read(&checker{fill: p.downFill}, stop, false)
	<-sent
	nc.Close()
	return c.result()
}

func runRandomBackend(nc net.Conn, p *randomPlan, c *peer) {
	rng := rand.New(rand.NewPCG(p.rng, 2))
	k := &checker{fill: p.upFill, got: 8} // the id is read
	none := 0
	switch p.kind {
	case kindEcho:
		// The id back, then each chunk as it comes.
		var id [8]byte
		p.upFill(0, id[:])
		if _, err := nc.Write(id[:]); err != nil {
			c.mu.Lock()
			c.log.writeErr, c.log.got, c.log.stopped = err, k.got, true
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		c.log.sent = 8
		c.mu.Unlock()
		buf := make([]byte, 32<<10)
		for {
			n, err := nc.Read(buf)
			if !k.take(buf[:n]) {
				c.mu.Lock()
				c.log.got, c.log.bad, c.log.stopped = k.got, k.bad, true
				c.mu.Unlock()
				c.reset()
				return
			}
			if n > 0 {
				if _, werr := nc.Write(buf[:n]); werr != nil {
					c.mu.Lock()
					c.log.writeErr, c.log.got, c.log.stopped = werr, k.got, true
					c.mu.Unlock()
					return
				}
				c.mu.Lock()
				c.log.sent += int64(n)
				c.mu.Unlock()
			}
			if err != nil {
				c.mu.Lock()
				c.log.got, c.log.readEnd = k.got, err
				if err == io.EOF {
					c.log.readEnd = nil
				}
				c.mu.Unlock()
				if err == io.EOF {
					c.finish()
				}
				return
			}
		}
	case kindHalfClose:
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			if c.send(p.downFill, 0, p.downLen, p.downChunk, rng, &none) {
				c.finish()
			}
		}()
		c.read(k, nil, false)
		<-sent
	case kindResetAfter:
		enough := make(chan struct{})
		var once sync.Once
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			if c.send(p.downFill, 0, p.downLen, p.downChunk, rng, &none) && p.finFirst {
				c.finish()
			}
			<-enough
			c.reset()
		}()
		c.read(k, func(got int64) bool {
			if got >= int64(p.resetRecv) {
				once.Do(func() { close(enough) })
			}
			return false
		}, false)
		once.Do(func() { close(enough) })
		<-sent
	case kindSlowReader:
		c.read(k, nil, true)
		if r := c.result(); r.readEnd == nil && !r.stopped {
			if c.send(p.downFill, 0, p.downLen, p.downChunk, rng, &none) {
				c.finish()
			}
		}
	}
}

// judge checks one connection against the promise, from what each peer
// did and saw; b is nil when the backend never got the client's id.
func judge(cl peerLog, b *peerLog) []string {
	var bad []string
	add := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	// The kernel reports a reset once, to the first call that looks: when a
	// peer's write took it, its read then sees an end (EOF). Such an end is
	// the reset's.
	for _, l := range []*peerLog{&cl, b} {
		if l != nil && l.readEnd == nil && !l.stopped && isReset(l.writeErr) {
			l.readEnd = l.writeErr
		}
	}
	if cl.bad != "" {
		add("client: %s", cl.bad)
	}
	if b == nil {
		if !cl.reset {
			add("the backend never got the client's first bytes, and the client did not reset")
		}
		if !cl.stopped && cl.readEnd == nil {
			add("the client saw a clean end of a backend stream that never began")
		}
		return bad
	}
	if b.bad != "" {
		add("backend: %s", b.bad)
	}
	// client → backend
	if !b.stopped {
		switch {
		case b.readEnd == nil && !cl.fin:
			add("the backend saw a clean end (EOF) after %d bytes of a client stream that never ended cleanly (%d bytes sent)", b.got, cl.sent)
		case b.readEnd == nil && b.got != cl.sent:
			add("the backend got %d of the client's %d bytes, then a clean end", b.got, cl.sent)
		case b.readEnd != nil && !cl.reset:
			add("the backend's read ended with %s after %d of the client's %d bytes; the client did not reset", describe(b.readEnd), b.got, cl.sent)
		}
	}
	// backend → client
	if !cl.stopped {
		switch {
		case cl.readEnd == nil && !b.fin:
			add("the client saw a clean end (EOF) after %d bytes of a backend stream that never ended cleanly (%d bytes sent)", cl.got, b.sent)
		case cl.readEnd == nil && cl.got != b.sent:
			add("the client got %d of the backend's %d bytes, then a clean end", cl.got, b.sent)
		case cl.readEnd != nil && !b.reset:
			add("the client's read ended with %s after %d of the backend's %d bytes; the backend did not reset", describe(cl.readEnd), cl.got, b.sent)
		}
	}
	if cl.writeErr != nil && !b.reset {
		add("a client write failed (%v) though the backend did not reset", cl.writeErr)
	}
	if b.writeErr != nil && !cl.reset {
		add("a backend write failed (%v) though the client did not reset", b.writeErr)
	}
	return bad
}

// Many connections at once through the engine, to backends that echo,
// half-close, reset after some bytes or read slowly, from clients that
// write tiny or bulk, half-close, reset, send urgent data. For each
// direction: the bytes arrive in order; a clean end (EOF) comes only after
// a half-close and every byte before it; an end by a reset comes only from
// a peer that reset. At the end no connection, backend count or descriptor
// is left. Seeded: -contract.seed=N replays a run.
func TestContractRandomPeersKeepThePromise(t *testing.T) {
	seed := *contractSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: -contract.seed=%d)", seed, seed)
	const conns = 60
	rng := rand.New(rand.NewPCG(seed, seed>>32))
	plans := make([]*randomPlan, conns)
	for i := range plans {
		plans[i] = newRandomPlan(rng, seed, i)
	}
	backends := make([]atomic.Pointer[peer], conns)
	var started, finished atomic.Int64
	var straysMu sync.Mutex
	var strays []string
	handle := func(nc net.Conn) {
		started.Add(1)
		defer finished.Add(1)
		nc.SetDeadline(time.Now().Add(peerDeadline))
		var id [8]byte
		if _, err := io.ReadFull(nc, id[:]); err != nil {
			return // the client reset before its id came (judged from its side)
		}
		n := binary.LittleEndian.Uint64(id[:])
		if n >= conns || !backends[n].CompareAndSwap(nil, &peer{c: nc.(*net.TCPConn)}) {
			straysMu.Lock()
			strays = append(strays, fmt.Sprintf("%#x", id))
			straysMu.Unlock()
			abort(nc)
			return
		}
		runRandomBackend(nc, plans[n], backends[n].Load())
	}
	h := start(t, Settings{}, server(t, handle), server(t, handle), server(t, handle))
	base := settle(t, h)
	begin := time.Now()

	logs := make([]peerLog, conns)
	var wg sync.WaitGroup
	for i, p := range plans {
		wg.Go(func() { logs[i] = runRandomClient(h.addr, p) })
	}
	wg.Wait()
	waitEnded(t, h)
	var connected int64
	for _, b := range h.pool {
		connected += int64(b.Snapshot().Total)
	}
	waitUntil(t, "every backend connection's handler returned", func() bool {
		return started.Load() >= connected && finished.Load() == started.Load()
	}, func() string {
		return fmt.Sprintf("%d connected, %d handlers started, %d returned", connected, started.Load(), finished.Load())
	})
	t.Logf("%d connections in %v", conns, time.Since(begin).Round(time.Millisecond))

	if len(strays) != 0 {
		t.Errorf("backend connections began with a wrong or repeated id: %v", strays)
	}
	var kinds [4]int
	var resets int
	for i, p := range plans {
		kinds[p.kind]++
		var b *peerLog
		if pe := backends[i].Load(); pe != nil {
			r := pe.result()
			b = &r
			if r.reset {
				resets++
			}
		}
		if logs[i].reset {
			resets++
		}
		if bad := judge(logs[i], b); len(bad) > 0 {
			t.Errorf("connection %d: %s\n\tplan: client %d bytes, writes up to %d, %d urgent, reset at %d / after %d back; backend %v, %d bytes, writes up to %d, fin first %v, reset after %d\n\tclient saw %+v\n\tbackend saw %+v",
				i, strings.Join(bad, "; "), p.upLen, p.upChunk, p.urgent, p.clientResetAt, p.clientResetRecv, p.kind, p.downLen, p.downChunk, p.finFirst, p.resetRecv, logs[i], b)
		}
	}
	t.Logf("backends: %d echo, %d half-close, %d reset, %d slow; %d peers reset; stats %+v", kinds[0], kinds[1], kinds[2], kinds[3], resets, h.srv.Stats())
	waitDescriptors(t, h, base)
}
