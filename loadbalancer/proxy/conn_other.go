//go:build (unix && !linux) || lemonade_goroutines

package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/accesslog"
	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
)

// A connection's life in the goroutine engine (serve_other.go): its dial,
// its two flows, and its end.

// goConn is one proxied connection.
type goConn struct {
	s        *Server
	client   *net.TCPConn
	server   *net.TCPConn     // set under mu once connected, before ready closes
	b        *backend.Backend // the backend dialled or connected; set under mu
	up, down goFlow           // client → backend, backend → client
	ctx      context.Context  // ends with the connection or the client's reset: stops the dial
	cancel   context.CancelFunc
	ready    chan struct{}   // closed once the dial's outcome is known
	dialing  chan<- struct{} // told once the backend socket exists, or the first dial ended; then nil
	pokes    atomic.Uint32   // deadline changes by others (settingsChanged), see rearmRead
	last     atomic.Int64    // sinceStart() of the last bytes either way
	firstIn  atomic.Int64    // sinceStart() when the client's first bytes went to the backend

	// For the access log (accesslog.Record); the times are sinceStart().
	listener netip.AddrPort
	start    time.Duration    // accepted
	upAt     time.Duration    // the backend connection was up; 0 = never
	firstOut time.Duration    // the backend's first bytes; 0 = none yet
	retries  int              // dials after a failed one
	tried    *backend.Backend // the last backend dialled that gave no connection

	mu       sync.Mutex
	done     [2]bool // the flow from that side ended: what it sent is delivered, or can never be
	gone     [2]bool // that side reset
	counted  bool    // the abort is counted in Stats().Aborts
	linger   *time.Timer
	over     bool          // both sockets are closed
	firstFIN int           // 1 + the side whose FIN came first; 0 = none
	why      accesslog.End // the first cause of the end, once known
}

// goFlow is one direction of a connection.
type goFlow struct {
	c        *goConn
	from     int // atClient or atServer: the side it reads
	src, dst *net.TCPConn
	srcRaw   syscall.RawConn
	n        int64 // bytes delivered
	started  bool  // its first bytes went
	// holding: bytes read from src and not yet delivered. The idle timeout
	// may fire in the other flow first; it must reset, not close, then.
	holding atomic.Bool
}

// flowEnd is how a flow ended.
type flowEnd int

const (
	flowOn       flowEnd = iota
	flowFIN              // the source's FIN
	flowReset            // the source reset
	flowDstReset         // a write failed: the destination reset
	flowIdle             // the idle timeout
	flowIdleCut          // the idle timeout, with bytes read and not delivered
	flowClosed           // the connection was ended meanwhile
)

// handle runs a connection: the client's flow starts at once (it reads what
// the client sends while the backend is dialled, and sees it leave), the
// backend's once connected.
func (e *goEngine) handle(client *net.TCPConn, listener netip.AddrPort, dialing chan<- struct{}) {
	s := e.s
	c := &goConn{s: s, client: client, ready: make(chan struct{}), dialing: dialing, listener: listener, start: sinceStart()}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.up = goFlow{c: c, from: atClient, srcRaw: rawConn(client)}
	c.down = goFlow{c: c, from: atServer}
	c.up.srcRaw.Control(inlineUrgent)
	e.mu.Lock()
	e.conns[c] = struct{}{}
	e.mu.Unlock()

	upDone := make(chan struct{})
	go func() { defer close(upDone); c.up.runClient() }()
	server := e.connect(c)
	c.dialStarted()
	close(c.ready)
	if server != nil {
		c.poke() // the client's flow stops waiting for the dial
		c.down.run(getChunk(), 0, nil)
	} else {
		// No backend: the client's flow stops reading (the deadline wakes
		// it), then a client that sent bytes, which will never arrive, is
		// reset: a FIN would say they were taken.
		c.client.SetReadDeadline(aLongTimeAgo)
		<-upDone
		c.mu.Lock()
		c.end(c.up.holding.Load() || rawHasUnread(c.up.srcRaw))
		c.mu.Unlock()
	}
	<-upDone

	c.mu.Lock()
	c.end(false) // already ended by the flows; closes for sure
	b, server := c.b, c.server
	why, firstFIN := c.why, c.firstFIN
	c.mu.Unlock()
	e.mu.Lock()
	delete(e.conns, c)
	e.mu.Unlock()
	if e.fdWaiters.Load() > 0 {
		e.fdsFreed()
	}
	if al := s.accessLog.Load(); al != nil { // before the slot frees: a shutdown waits for it
		al.Send(c.record(b, server, why, firstFIN))
	}
	if b != nil {
		b.AddBytes(c.up.n, c.down.n)
		s.release(b)
	}
	s.gate.release()
	s.conns.Done()
}

// record is c's access log line, once c has ended: b is its backend (nil
// when none was dialled), server its connection (nil when none was made),
// why and firstFIN what c.mu guarded.
func (c *goConn) record(b *backend.Backend, server *net.TCPConn, why accesslog.End, firstFIN int) accesslog.Record {
	now := time.Now() // the wall clock now, not clockStart's plus the time since: it may have been set
	r := accesslog.Record{
		Duration: now.Sub(clockStart) - c.start,
		Listener: c.listener,
		BytesIn:  c.up.n,
		BytesOut: c.down.n,
		Connect:  -1,
		TTFB:     -1,
		Retries:  c.retries,
		End:      why,
	}
	r.Start = now.Add(-r.Duration)
	if a, ok := c.client.RemoteAddr().(*net.TCPAddr); ok {
		r.Client = unmapped(a.AddrPort())
	}
	if r.End == 0 { // a clean close: named by the first FIN
		r.End = accesslog.ClientFIN
		if firstFIN == 1+atServer {
			r.End = accesslog.BackendFIN
		}
	}
	switch {
	case b != nil:
		r.Backend = b.Name()
		if server != nil {
			if a, ok := server.RemoteAddr().(*net.TCPAddr); ok {
				r.BackendAddr = unmapped(a.AddrPort())
			}
		}
	case c.tried != nil:
		r.Backend = c.tried.Name()
	}
	if c.upAt != 0 {
		r.Connect = c.upAt - c.start
		if c.firstOut != 0 {
			from := c.upAt // the backend spoke first
			if in := time.Duration(c.firstIn.Load()); in != 0 && in <= c.firstOut {
				from = in
			}
			r.TTFB = c.firstOut - from
		}
	}
	return r
}

// unmapped is ap with an IPv4-mapped address as IPv4 (a dual-stack
// listener's clients), as the Linux engine logs it.
func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// endFor records why c ends, unless an earlier cause is known. c.mu is
// held.
func (c *goConn) endFor(e accesslog.End) {
	if c.why == 0 {
		c.why = e
	}
}

// endWith records why c ends (see endFor).
func (c *goConn) endWith(e accesslog.End) {
	c.mu.Lock()
	c.endFor(e)
	c.mu.Unlock()
}

// connect picks and dials a backend for c, from the table in force at each
// try, and returns the connection, or nil when c is to be closed: no
// backend is eligible, every try failed, the client left, the server is
// closing. A failed dial tries another backend at once, up to
// Settings.Retries more. A failure of this host (out of descriptors or
// ports) counts against no backend: the client is kept, and the dial is
// tried again after a pause, until the client leaves, the server closes or
// fdWaitTimeout passes.
func (e *goEngine) connect(c *goConn) *net.TCPConn {
	s := e.s
	set := s.settings.Load()
	var pause time.Duration
	var freed <-chan struct{} // while waiting for a descriptor
	var waitUntil time.Time   // the end of the wait for a descriptor
	var tried []*backend.Backend
	retry := false // the last dial failed: the next is a retry
	for tries := set.Retries + 1; tries > 0; {
		if s.closing.Load() {
			c.endWith(accesslog.Shutdown)
			return nil
		}
		if c.ctx.Err() != nil { // the client reset, or c was closed: its cause is known
			return nil
		}
		if pause > 0 { // taken before the dial: a descriptor freed after it wakes this
			freed = e.fdFreedChan()
		}
		t := s.route.Load().t
		if t == nil {
			break
		}
		b := s.pick(t, tried)
		if b == nil {
			break
		}
		b.Acquire()
		if !c.assign(b) {
			s.release(b)
			return nil
		}
		if retry {
			c.retried()
			retry = false
		}
		start := time.Now()
		server, reset, err := dialBackend(c.ctx, b, set.ConnectTimeout, c.dialStarted, c.retried)
		c.dialStarted()
		if err == nil {
			c.upAt = sinceStart()
			b.Connected(time.Since(start))
			if !c.connected(server, reset) {
				return nil
			}
			return server
		}
		c.assign(nil)
		s.release(b)
		c.tried = b
		switch {
		case c.ctx.Err() != nil: // the client left, or c was closed: nobody's failure
			return nil
		case backend.LocalFailure(err):
			if pause == 0 {
				s.waitedFDs.Add(1)
				e.fdWaiters.Add(1)
				defer e.stopWaiting()
				waitUntil = time.Now().Add(fdWaitTimeout)
			} else if time.Now().After(waitUntil) {
				e.warnLocal(err)
				c.endWith(accesslog.NoDescriptor)
				return nil
			}
			e.warnLocal(err)
			pause = min(max(2*pause, 10*time.Millisecond), maxDialPause)
			timer := time.NewTimer(pause)
			select {
			case <-timer.C:
			case <-freed: // (nil the first time: the first pause is short)
				timer.Stop()
			case <-c.ctx.Done():
				timer.Stop()
				return nil
			}
		default:
			tried = append(tried, b)
			s.dialFailed(b, set, err.Error())
			b.Reresolve()
			tries--
			retry = true
		}
	}
	s.noBackend.Add(1)
	c.endWith(accesslog.NoBackend)
	return nil
}

// retried counts a dial that follows a failed one.
func (c *goConn) retried() {
	c.retries++
	c.s.retries.Add(1)
}

// stopWaiting: a client waits for a descriptor no more; when it was the
// last, the accept loops go on.
func (e *goEngine) stopWaiting() {
	if e.fdWaiters.Add(-1) == 0 {
		e.fdsFreed()
	}
}

// dialStarted tells the accept loop that c's backend socket exists, or that
// its first dial ended (once).
func (c *goConn) dialStarted() {
	if c.dialing != nil {
		select {
		case c.dialing <- struct{}{}:
		default:
		}
		c.dialing = nil
	}
}

var errNoAddress = errors.New("no address")

// dialBackend dials b's addresses in order until one answers, within
// timeout in all (shared evenly by the addresses left), calling retried at
// each move to the next address; opened runs once a socket exists. reset:
// the backend accepted, then reset before the dial saw it connected; what
// it sent before is still to be read from the connection returned.
func dialBackend(ctx context.Context, b *backend.Backend, timeout time.Duration, opened, retried func()) (server *net.TCPConn, reset bool, err error) {
	addrs, err := b.Addrs()
	if err != nil {
		return nil, false, err
	}
	deadline := time.Now().Add(timeout)
	err = errNoAddress
	for i, ap := range addrs {
		if i > 0 { // the address before failed, and not for a reason of this host
			retried()
		}
		d := net.Dialer{KeepAliveConfig: keepAlive, Deadline: time.Now().Add(time.Until(deadline) / time.Duration(len(addrs)-i))}
		if server, reset, err = dialAddr(ctx, &d, ap.String(), opened); err == nil {
			return server, reset, nil
		}
		if backend.LocalFailure(err) || ctx.Err() != nil {
			break
		}
	}
	return nil, false, err
}

// dialAddr dials addr with d. A connect that completes and is reset before
// the dialer looks fails with ECONNRESET (or EPIPE), and the dialer closes
// the socket with the backend's bytes in it: so the socket is kept (dup)
// until the dial's outcome is known, and such a failure is a connection
// that reset.
func dialAddr(ctx context.Context, d *net.Dialer, addr string, opened func()) (server *net.TCPConn, reset bool, err error) {
	kept := -1
	d.Control = func(_, _ string, rc syscall.RawConn) error {
		opened()
		return rc.Control(func(fd uintptr) {
			inlineUrgent(fd)
			closeFD(kept)
			kept = dupFD(fd)
		})
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		closeFD(kept)
		return conn.(*net.TCPConn), false, nil
	}
	if kept < 0 || !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		closeFD(kept)
		return nil, false, err
	}
	f := os.NewFile(uintptr(kept), addr)
	conn, ferr := net.FileConn(f) // a descriptor of its own
	f.Close()
	if ferr != nil {
		return nil, false, err
	}
	return conn.(*net.TCPConn), true, nil
}

// warnLocal logs a local failure, at most once a second.
func (e *goEngine) warnLocal(err error) {
	now, last := int64(sinceStart()), e.warned.Load()
	if last != 0 && now-last < int64(time.Second) || !e.warned.CompareAndSwap(last, now) {
		return
	}
	e.s.log.Warn("no descriptor for a backend connection: clients wait", "error", err)
}

// assign records the backend c is dialling (nil: none); false if c ended.
func (c *goConn) assign(b *backend.Backend) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b != nil && c.over {
		return false
	}
	c.b = b
	return true
}

// connected records c's backend connection (reset: it reset at once);
// false if c ended meanwhile or the server is closing (then both are
// reset).
func (c *goConn) connected(server *net.TCPConn, reset bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.over || c.s.closing.Load() {
		server.SetLinger(0)
		server.Close()
		c.endFor(accesslog.Shutdown)
		c.end(true)
		return false
	}
	c.server = server
	c.up.src, c.up.dst = c.client, server
	c.down.src, c.down.dst, c.down.srcRaw = server, c.client, rawConn(server)
	c.touch()
	if reset {
		c.markGone(atServer)
	}
	return true
}

// poke makes both flows of a connected c look at their deadlines now.
func (c *goConn) poke() {
	c.mu.Lock()
	server := c.server
	c.mu.Unlock()
	if server == nil {
		return // dialling: the flows have no deadline yet
	}
	c.pokes.Add(1)
	c.client.SetDeadline(aLongTimeAgo)
	server.SetDeadline(aLongTimeAgo)
}

var aLongTimeAgo = time.Unix(1, 0)

func (c *goConn) touch() { c.last.Store(int64(sinceStart())) }

func (c *goConn) idleTimeout() time.Duration { return c.s.settings.Load().IdleTimeout }

func (c *goConn) sock(x int) *net.TCPConn {
	if x == atClient {
		return c.client
	}
	return c.server
}

// end closes c's sockets, resetting (rst) those that did not reset
// themselves; it stops the dial. c.mu is held.
func (c *goConn) end(rst bool) {
	if c.over {
		return
	}
	c.over = true
	if c.linger != nil {
		c.linger.Stop()
	}
	c.cancel()
	for x := range 2 {
		if s := c.sock(x); s != nil {
			if rst && !c.gone[x] {
				s.SetLinger(0)
			}
			s.Close()
		}
	}
}

// settle ends c when it is done: reset, once a side that reset has had
// what it sent before delivered; closed once both flows ended with a FIN.
// c.mu is held.
func (c *goConn) settle() {
	switch {
	case c.over:
	case c.gone[atClient] && c.done[atClient], c.gone[atServer] && c.done[atServer]:
		c.end(true)
	case c.done[atClient] && c.done[atServer]:
		c.end(false)
	}
}

// markGone notes that side x reset. The first reset is counted, and
// bounds by abortLinger the delivery of what came before it. c.mu is held.
func (c *goConn) markGone(x int) {
	if c.gone[x] {
		return
	}
	if !c.gone[1-x] {
		c.endFor([2]accesslog.End{accesslog.ClientReset, accesslog.BackendReset}[x])
		c.countAbort()
		c.linger = time.AfterFunc(abortLinger, c.abortNow)
	}
	c.gone[x] = true
}

func (c *goConn) countAbort() {
	if !c.counted {
		c.counted = true
		c.s.aborts.Add(1)
	}
}

func (c *goConn) abortNow() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.end(true)
}

// fromEnded: the flow from x ended, with x's FIN (passed on as a
// half-close unless the connection is being aborted) or x's reset. It
// reports whether c goes on.
func (c *goConn) fromEnded(x int, fin bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.over {
		return false
	}
	c.done[x] = true
	if fin && c.firstFIN == 0 {
		c.firstFIN = 1 + x
	}
	if !fin {
		c.markGone(x)
	} else if !c.gone[atClient] && !c.gone[atServer] {
		c.sock(1 - x).CloseWrite()
	}
	c.settle()
	return !c.over
}

// intoFailed: a write to x failed, x reset. Nothing more goes to x; the
// flow from x delivers what x sent before (c ends when it has).
func (c *goConn) intoFailed(x int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.over {
		return
	}
	c.done[1-x] = true
	c.markGone(x)
	c.settle()
}

// resetSeen: x's socket reports a reset while its flow is not reading it.
func (c *goConn) resetSeen(x int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.over {
		return
	}
	c.markGone(x)
	c.settle()
}

// idleEnd closes an idle c: reset when bytes would be lost (cut, or
// either flow holds bytes not delivered: the flow that timed out first may
// not be the one stuck on a write) or it is being aborted anyway.
func (c *goConn) idleEnd(cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.over {
		return
	}
	c.endFor(accesslog.IdleTimeout)
	cut = cut || c.up.holding.Load() || c.down.holding.Load() || rawHasUnread(c.up.srcRaw) || (c.down.srcRaw != nil && rawHasUnread(c.down.srcRaw))
	c.end(cut || c.gone[atClient] || c.gone[atServer])
}

// abandon: the client's socket failed while its backend was dialled: the
// dial is dropped (and counts against nobody).
func (c *goConn) abandon(err error) {
	if !isClosed(err) { // the client reset; else c was closed
		c.mu.Lock()
		c.endFor(accesslog.ClientReset)
		c.countAbort()
		c.mu.Unlock()
	}
	c.cancel()
}

// runClient is the client's flow: it reads while the backend is dialled,
// then moves the client's bytes to it.
func (f *goFlow) runClient() {
	c := f.c
	chunk := getChunk()
	n, err := c.readWhileDialling(*chunk)
	if c.server == nil {
		putChunk(chunk)
		return
	}
	f.run(chunk, n, err)
}

// readWhileDialling reads what the client sends while its backend is
// dialled (into buf, up to its size), and watches the client: its reset
// abandons the dial, its FIN does not (it may wait for an answer). It
// returns once the dial's outcome is known, with what it read and how the
// reading ended.
func (c *goConn) readWhileDialling(buf []byte) (n int, rerr error) {
	for {
		select {
		case <-c.ready:
			return n, rerr
		default:
		}
		var err error
		if rerr == nil && n < len(buf) {
			var m int
			m, err = c.client.Read(buf[n:])
			n += m
			if m > 0 {
				c.up.holding.Store(true) // what was read must reach a backend
			}
			if err == io.EOF {
				rerr = err
				continue
			}
		} else { // after the FIN, or with buf full: only a reset matters
			err = waitReset(c.up.srcRaw)
		}
		switch {
		case err == nil:
		case isTimeout(err): // handle's poke: the dial is done
			<-c.ready
		default: // the client reset, or c was closed
			c.abandon(err)
			<-c.ready
			return n, err
		}
	}
}

// run moves f's source to its destination, starting with the n bytes in
// chunk and the read error rerr (what came while the backend was dialled),
// then ends the flow (see flowEnd).
func (f *goFlow) run(chunk *[]byte, n int, rerr error) {
	end := f.move(*chunk, n, rerr)
	putChunk(chunk)
	c := f.c
	switch end {
	case flowFIN:
		if c.fromEnded(f.from, true) {
			f.watch()
		}
	case flowReset:
		c.fromEnded(f.from, false)
	case flowDstReset:
		c.intoFailed(1 - f.from)
	case flowIdle:
		c.idleEnd(false)
	case flowIdleCut:
		c.idleEnd(true)
	}
}

func (f *goFlow) move(buf []byte, n int, rerr error) flowEnd {
	f.holding.Store(n > 0)
	if !f.rearmRead() || !f.armWrite() {
		return flowIdle
	}
	for {
		if n > 0 {
			f.arrived()
			if end := f.write(buf[:n]); end != flowOn {
				return end
			}
			f.holding.Store(false)
		}
		switch {
		case rerr == nil:
		case isTimeout(rerr):
			if !f.rearmRead() {
				return flowIdle
			}
		case rerr == io.EOF:
			return flowFIN
		case isClosed(rerr):
			return flowClosed
		default:
			return flowReset
		}
		n, rerr = f.src.Read(buf)
		if n > 0 {
			f.holding.Store(true)
			f.c.touch()
		}
	}
}

// write writes p to f's destination. Its deadline passes every probeEvery
// while it waits: the source is looked at, and the write goes on unless the
// connection is idle.
func (f *goFlow) write(p []byte) flowEnd {
	for {
		m, err := f.dst.Write(p)
		f.n += int64(m)
		if m > 0 {
			f.c.touch()
		}
		switch {
		case err == nil:
			return flowOn
		case isClosed(err):
			return flowClosed
		case !isTimeout(err):
			return flowDstReset
		}
		p = p[m:]
		if sockError(f.srcRaw) != 0 {
			// The source reset while this waited: what it sent before still
			// goes (for abortLinger at most), then the reset.
			f.c.resetSeen(f.from)
		}
		if !f.armWrite() {
			return flowIdleCut // a FIN would make the cut stream look complete
		}
	}
}

// writeSlackEighths delays, in eighths of the idle timeout, when a write
// counts the connection idle. Only the tests change it: a stalled write then
// notices after the quiet flow's read, the order a loaded machine can
// produce.
var writeSlackEighths atomic.Int64

// armWrite sets f's write deadline to the next look at the source, or the
// idle timeout if sooner; false if the connection is idle already.
func (f *goFlow) armWrite() bool {
	now := sinceStart()
	next := now + probeEvery
	if idle := f.c.idleTimeout(); idle > 0 {
		idle += idle * time.Duration(writeSlackEighths.Load()) / 8
		last := time.Duration(f.c.last.Load())
		if now-last >= idle {
			return false
		}
		next = min(next, last+idle)
	}
	f.dst.SetWriteDeadline(clockStart.Add(next))
	return true
}

// rearmRead sets f's read deadline to the idle timeout after the last bytes
// either way (a little later than a write's, so that a write waiting for a
// slow receiver notes its progress first); false if the connection is idle.
func (f *goFlow) rearmRead() bool {
	c := f.c
	for {
		g := c.pokes.Load()
		var deadline time.Time
		if idle := c.idleTimeout(); idle > 0 {
			last := time.Duration(c.last.Load())
			if sinceStart()-last >= idle {
				return false
			}
			deadline = clockStart.Add(last + idle + idle/8)
		}
		f.src.SetReadDeadline(deadline)
		if c.pokes.Load() == g { // else a poke may have been overwritten
			return true
		}
	}
}

// arrived notes f's first bytes, for the response-time sample: from the
// client's first bytes to the backend's (none if the backend spoke first).
func (f *goFlow) arrived() {
	if f.started {
		return
	}
	f.started = true
	c := f.c
	if f.from == atClient {
		c.firstIn.Store(int64(sinceStart()))
		return
	}
	c.firstOut = sinceStart()
	if t0 := c.firstIn.Load(); t0 != 0 {
		c.b.ObserveLatency(c.firstOut - time.Duration(t0))
	}
}

// watch waits, after f's source sent its FIN, for it to reset, until the
// connection ends or is idle.
func (f *goFlow) watch() {
	for {
		err := waitReset(f.srcRaw)
		switch {
		case isTimeout(err):
			if !f.rearmRead() {
				f.c.idleEnd(false)
				return
			}
		case isClosed(err):
			return
		default:
			f.c.resetSeen(f.from)
			return
		}
	}
}

// waitReset waits until the socket reports an error (its peer reset) and
// returns it, or returns the error that ended the wait (its read deadline
// passed, it was closed). It does not read: for a socket after its FIN, or
// whose bytes are not wanted yet.
func waitReset(rc syscall.RawConn) error {
	var e syscall.Errno
	err := rc.Read(func(fd uintptr) bool {
		e = sockErrno(fd)
		return e != 0
	})
	if err != nil {
		return err
	}
	return e
}

// rawHasUnread is hasUnread of rc's socket; false once it is closed.
func rawHasUnread(rc syscall.RawConn) bool {
	var u bool
	rc.Control(func(fd uintptr) { u = hasUnread(int(fd)) })
	return u
}

// sockError reads and clears the socket's pending error (SO_ERROR).
func sockError(rc syscall.RawConn) syscall.Errno {
	var e syscall.Errno
	rc.Control(func(fd uintptr) { e = sockErrno(fd) })
	return e
}

func sockErrno(fd uintptr) syscall.Errno {
	v, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_ERROR)
	if err != nil {
		return 0
	}
	return syscall.Errno(v)
}

// inlineUrgent sets SO_OOBINLINE: urgent data (MSG_OOB) stays in the
// stream, in its place, rather than being dropped by a plain read. Set on
// the listener, accepted sockets inherit it, even with urgent data that
// came before the accept; set on each accepted socket too, since an MPTCP
// listener (Go's default on Linux) refuses it.
func inlineUrgent(fd uintptr) {
	syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_OOBINLINE, 1)
}

// dupFD returns a close-on-exec copy of fd, or -1.
func dupFD(fd uintptr) int {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	nfd, err := syscall.Dup(int(fd))
	if err != nil {
		return -1
	}
	syscall.CloseOnExec(nfd)
	return nfd
}

func closeFD(fd int) {
	if fd >= 0 {
		syscall.Close(fd)
	}
}

func rawConn(c *net.TCPConn) syscall.RawConn {
	rc, _ := c.SyscallConn() // fails only for a nil or closed conn
	return rc
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }

// clockStart makes deadlines from monotonic durations.
var clockStart = time.Now()

func sinceStart() time.Duration { return time.Since(clockStart) }

var chunks = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

func getChunk() *[]byte  { return chunks.Get().(*[]byte) }
func putChunk(b *[]byte) { chunks.Put(b) }
