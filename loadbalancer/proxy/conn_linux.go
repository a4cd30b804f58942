//go:build !lemonade_goroutines

package proxy

import (
	"errors"
	"net/netip"
	"syscall"
	"time"
	"unsafe"

	"github.com/lemonade-lb/lemonade/loadbalancer/accesslog"
	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
)

// A connection's life in its loop: dial (with retries and a timeout), then
// bytes both ways with half-close, then the end: a clean close once both
// sides sent their FIN, or, when a side resets, the bytes it sent before the
// reset delivered and the reset passed on to the other side. See
// loop_linux.go for the loop that drives it.

// side names the two peers of a connection, as a bit set.
type side uint8

const (
	clientSide side = 1 << iota
	serverSide
)

// conn is one proxied connection, owned by its loop.
type conn struct {
	loop           *loop
	client, server int // descriptors; server is -1 when no dial is open
	b              *backend.Backend
	addr           int // the address of b being dialled, an index in b.Addrs()
	set            *Settings
	tries          int                // backends left to try
	tried          []*backend.Backend // the backends whose dial failed
	dialStart      int64              // monotime
	deadline       int64              // monotime: the dial's or an abort's end
	fdDeadline     int64              // monotime: the end of a wait for a descriptor; 0 = never waited
	dialing        int                // index in loop.dialing, or -1
	index          int                // index in loop.conns
	up, down       flow               // client → backend, backend → client
	firstIn        int64              // monotime of the client's first bytes; 0 = none yet
	sampled        bool               // the response-time sample is taken
	last           int64              // monotime of the last bytes either way
	outq           int                // the sockets' send queues at the last idle check
	oobInline      bool               // the backend socket keeps urgent data inline
	keptAlive      bool               // the backend socket has keep-alive probes
	aborted        side               // the sides that reset
	lingering      int                // index in loop.lingering (passing on a reset), or -1
	waitingFD      bool               // in loop.fdWait: no descriptor for the backend socket
	closed         bool

	// For the access log (accesslog.Record).
	ln       *listener
	addrs    *connAddrs    // nil unless the access log was on at the accept
	start    int64         // monotime of the accept (the loop's clock)
	upAt     int64         // monotime the backend connection was up; 0 = never
	firstOut int64         // monotime of the backend's first bytes; 0 = none yet
	retries  int           // dials after a failed one
	firstFIN side          // the side whose FIN came first
	why      accesslog.End // the first cause of the end, once known
}

// connAddrs are the addresses of a connection, for the access log: kept
// only while it is on, so that a connection costs no more without it.
type connAddrs struct {
	peer netip.AddrPort // the client
	to   netip.AddrPort // the backend address dialled
}

// flow is one direction of a connection.
type flow struct {
	from, to int
	pending  []byte // read from `from`, not yet taken by `to`
	buf      []byte // pending's buffer, back to loop.spare when sent
	n        int64
	eof      bool // the source ended: its FIN, or the end of what it sent before its reset
	dead     bool // the destination reset: nothing more is read or sent
	hup      bool // the source's FIN or error was reported: read to the end
	urgent   bool // urgent data was reported: reads stop short at its mark, so read to EAGAIN
	queued   bool // in loop.again: the source has more than its budget brought
}

// flowFrom is the flow whose source is x; flowInto the one whose destination is x.
func (c *conn) flowFrom(x side) *flow {
	if x == clientSide {
		return &c.up
	}
	return &c.down
}

func (c *conn) flowInto(x side) *flow {
	if x == clientSide {
		return &c.down
	}
	return &c.up
}

func (c *conn) sideOf(fd int) side {
	if fd == c.client {
		return clientSide
	}
	return serverSide
}

func (c *conn) fdOf(x side) int {
	if x == clientSide {
		return c.client
	}
	return c.server
}

func (l *loop) open(fd int, ln *listener, addrs *connAddrs) {
	c := &conn{
		loop:      l,
		client:    fd,
		server:    -1,
		set:       l.srv.settings.Load(),
		dialing:   -1,
		lingering: -1,
		index:     len(l.conns),
		last:      l.now,
		ln:        ln,
		addrs:     addrs,
		start:     l.now,
	}
	l.conns = append(l.conns, c)
	c.tries = c.set.Retries + 1
	if l.register(fd, c) != 0 {
		c.endFor(accesslog.NoDescriptor)
		l.close(c, false)
		return
	}
	l.dial(c)
}

// dial connects c to the next backend the strategy picks, from the table in
// force at each try, trying each of its addresses; when no backend is
// eligible or every try failed, it closes the client. Out of descriptors it
// keeps the client and waits (waitForFD).
func (l *loop) dial(c *conn) {
	for ; c.tries > 0; c.tries-- {
		if l.srv.closing.Load() { // shutting down: no new backend connection
			c.endFor(accesslog.Shutdown)
			l.close(c, false)
			return
		}
		if c.b == nil {
			t := l.srv.route.Load().t
			if t == nil {
				break
			}
			b := l.srv.pick(t, c.tried)
			if b == nil {
				break
			}
			b.Acquire()
			c.b, c.addr = b, 0
			c.dialStart = monotime()
		}
		switch l.connect(c, nil) {
		case dialStarted:
			return
		case dialLocalFailure:
			return
		}
		// every address of c.b failed: the next try picks again
	}
	l.srv.noBackend.Add(1)
	c.endFor(accesslog.NoBackend)
	l.close(c, false)
}

type dialOutcome int

const (
	dialStarted      dialOutcome = iota // connected or in progress; c.b is c's backend
	dialFailed                          // every address refused: c.b is released
	dialLocalFailure                    // this host is out of something: c waits or is closed
)

// connect starts a connection to c.b from its address c.addr on, moving to
// the next address when one refuses at once or cannot be used from this
// host; failed is why the address before c.addr failed, if it did. Each
// address gets an equal share of what is left of the connect timeout.
func (l *loop) connect(c *conn, failed error) dialOutcome {
	addrs, err := c.b.Addrs()
	if err != nil {
		return l.backendFailed(c, err.Error())
	}
	err = failed
	var unusable syscall.Errno // the last address this host could not use
	portsOut := false          // an IPv4 address found no local port
	for ; c.addr < len(addrs); c.addr++ {
		fd, e := l.socketTo(addrs[c.addr])
		if fd < 0 {
			switch e {
			case syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM:
				l.waitForFD(c, e) // the next address would fail the same
				return dialLocalFailure
			case syscall.EADDRNOTAVAIL, syscall.EAGAIN:
				portsOut = portsOut || addrs[c.addr].Addr().Unmap().Is4()
			}
			// EADDRNOTAVAIL on IPv6 disabled here, EAFNOSUPPORT, a zone
			// with no interface: this address is unusable, the next may do.
			unusable = e
			continue
		}
		if err != nil || len(c.tried) > 0 { // an address or a backend failed this connection before
			l.srv.retries.Add(1)
			c.retries++
		}
		if e != 0 && e != syscall.EINPROGRESS {
			closeFD(fd)
			err = e
			continue
		}
		c.server = fd
		if c.addrs != nil {
			c.addrs.to = addrs[c.addr]
		}
		if errno := l.register(fd, c); errno != 0 {
			l.warnLocal("cannot watch a backend connection", errno)
			l.srv.release(c.b)
			c.b = nil
			c.endFor(accesslog.NoDescriptor)
			l.close(c, false)
			return dialLocalFailure
		}
		if e == 0 {
			l.connected(c)
			return dialStarted
		}
		now := monotime()
		left := c.dialStart + int64(c.set.ConnectTimeout) - now
		c.deadline = now + max(left, 0)/int64(len(addrs)-c.addr)
		c.dialing = len(l.dialing)
		l.dialing = append(l.dialing, c)
		l.scheduleCheck(c.deadline)
		return dialStarted
	}
	switch {
	case err != nil: // the backend refused or did not answer: its failure
		return l.backendFailed(c, err.Error())
	case portsOut: // no local port left: this host's shortage
		l.waitForFD(c, syscall.EADDRNOTAVAIL)
		return dialLocalFailure
	case unusable != 0:
		return l.backendFailed(c, "no usable address: "+unusable.Error())
	}
	return l.backendFailed(c, "no address")
}

// errConnectTimeout is a dial that connect_timeout ended.
var errConnectTimeout = errors.New("connect timeout")

// backendFailed records a failed dial to c.b (passive health) and releases
// it; the backend's name is looked up again in case it moved.
func (l *loop) backendFailed(c *conn, reason string) dialOutcome {
	b := c.b
	c.b = nil
	c.tried = append(c.tried, b)
	l.srv.release(b)
	l.srv.dialFailed(b, c.set, reason)
	b.Reresolve()
	return dialFailed
}

// dialDone runs when the backend socket of a dialing connection is writable
// or failed: the connect's outcome is known. Writable without an error is a
// success; otherwise SO_ERROR tells a refused or unreachable backend (try
// its next address, then another backend) from one that accepted and then
// closed or reset (connected: the client gets what there is, then the end).
func (l *loop) dialDone(c *conn, ev uint32) {
	l.stopDialing(c)
	if ev&(syscall.EPOLLERR|syscall.EPOLLHUP) == 0 {
		l.connected(c)
		return
	}
	soerr := sockError(c.server)
	if soerr == 0 || soerr == syscall.ECONNRESET || soerr == syscall.EPIPE {
		l.connected(c)
		if soerr != 0 {
			l.reset(c, serverSide)
		}
		return
	}
	l.closeSocket(c.server)
	c.server = -1
	c.addr++
	if l.connect(c, soerr) != dialFailed {
		return
	}
	c.tries--
	l.dial(c)
}

// abandon ends a connection whose client reset while its backend was being
// dialled or waited for: the dial is dropped and counts for nobody.
func (l *loop) abandon(c *conn) {
	l.srv.aborts.Add(1)
	c.endFor(accesslog.ClientReset)
	if c.b != nil {
		l.srv.release(c.b)
		c.b = nil
	}
	l.close(c, false)
}

func (l *loop) stopLingering(c *conn) {
	if c.lingering < 0 {
		return
	}
	last := l.lingering[len(l.lingering)-1]
	l.lingering[c.lingering] = last
	last.lingering = c.lingering
	l.lingering[len(l.lingering)-1] = nil
	l.lingering = l.lingering[:len(l.lingering)-1]
	c.lingering = -1
}

func (l *loop) stopDialing(c *conn) {
	if c.dialing < 0 {
		return
	}
	last := l.dialing[len(l.dialing)-1]
	l.dialing[c.dialing] = last
	last.dialing = c.dialing
	l.dialing = l.dialing[:len(l.dialing)-1]
	c.dialing = -1
}

// waitForFD parks c after this host ran out of descriptors, memory or
// ports at socket(2): not the backend's fault, so its health is left alone,
// and not the client's, so it is kept and served once descriptors free.
// Meanwhile the loop accepts no one new.
func (l *loop) waitForFD(c *conn, e syscall.Errno) {
	l.srv.release(c.b)
	c.b = nil
	if c.fdDeadline == 0 {
		c.fdDeadline = l.now + int64(fdWaitTimeout)
		l.srv.waitedFDs.Add(1)
	}
	c.waitingFD = true
	l.fdWait = append(l.fdWait, c)
	l.warnLocal("no descriptor for a backend connection: clients wait, accepting paused", e)
	l.pauseForFDs()
}

func (l *loop) connected(c *conn) {
	c.upAt = monotime()
	c.b.Connected(time.Duration(c.upAt - c.dialStart))
	if l.srv.closing.Load() { // shutdown's CloseAll is on its way
		c.endFor(accesslog.Shutdown)
		l.abort(c)
		return
	}
	c.up.from, c.up.to = c.client, c.server
	c.down.from, c.down.to = c.server, c.client
	c.last = l.now
	// The client may have sent bytes (or its FIN, noted in up.hup) while the
	// dial went on: read them now, their edge is gone.
	l.pump(c, &c.up)
}

// turnBudget is what one flow may move per turn of its loop (1 MiB: a
// 1-byte echo beside a bulk transfer waits about a millisecond per turn,
// and the turns cost few extra epoll_waits). A flow with
// more waits for the other ready events (again): one bulk transfer never
// stalls a small request on the same loop.
const turnBudget = 16 * bufSize

// pump moves what f's source has to its destination, at most turnBudget. A
// short read means the source is empty (an edge-triggered socket reports new
// bytes with a new edge), unless its FIN, an error or urgent data was
// reported: then it reads to the end.
func (l *loop) pump(c *conn, f *flow) {
	for budget := turnBudget; !c.closed && f.pending == nil && !f.eof && !f.dead; {
		n, e := recv(f.from, l.buf)
		switch {
		case e == syscall.EAGAIN:
			f.urgent = false
			return
		case e == syscall.EINTR:
			continue
		case e != 0: // the source reset: what it sent before is delivered
			l.reset(c, c.sideOf(f.from))
			l.eof(c, f)
			return
		case n == 0:
			l.eof(c, f)
			return
		}
		l.arrived(c, f)
		f.n += int64(n)
		if !l.forward(c, f, l.buf[:n]) || (n < len(l.buf) && !f.hup && !f.urgent) {
			return
		}
		budget -= n
		l.longestTurn = max(l.longestTurn, turnBudget-budget)
		if budget <= 0 {
			l.later(c, f)
			return
		}
	}
}

// later pumps f again after the loop's other ready events.
func (l *loop) later(c *conn, f *flow) {
	if !f.queued {
		f.queued = true
		l.again = append(l.again, pumpLater{c, f})
	}
}

// pumpLater is a flow with more to read than its budget allowed.
type pumpLater struct {
	c *conn
	f *flow
}

// arrived notes bytes from f's source: the activity time, and the first
// bytes each way for the response-time sample (the backend's first bytes
// after the client's, so that the client's think time does not count).
func (l *loop) arrived(c *conn, f *flow) {
	c.last = l.now
	if c.sampled {
		return
	}
	if f == &c.up {
		if c.firstIn == 0 {
			c.firstIn = monotime()
		}
		return
	}
	c.firstOut = monotime()
	if c.firstIn != 0 {
		c.b.ObserveLatency(time.Duration(c.firstOut - c.firstIn))
	}
	c.sampled = true // or the backend spoke first: no sample
}

// forward writes data to f's destination; what it does not take waits in a
// buffer (and f reads no more) until the destination is writable again. A
// destination that fails has reset.
func (l *loop) forward(c *conn, f *flow, data []byte) bool {
	for len(data) > 0 {
		n, e := send(f.to, data)
		switch e {
		case 0:
			data = data[n:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			f.buf = l.takeBuf()
			f.pending = f.buf[:copy(f.buf, data)]
			return false
		default:
			l.reset(c, c.sideOf(f.to))
			return false
		}
	}
	return true
}

// flush sends f's pending bytes now that its destination is writable, then
// reads on.
func (l *loop) flush(c *conn, f *flow) {
	if c.closed || f.pending == nil {
		return
	}
	for len(f.pending) > 0 {
		n, e := send(f.to, f.pending)
		switch e {
		case 0:
			f.pending = f.pending[n:]
			c.last = l.now
		case syscall.EINTR:
		case syscall.EAGAIN:
			return
		default:
			l.reset(c, c.sideOf(f.to))
			return
		}
	}
	l.dropPending(f)
	if f.eof { // the rest of what an aborted side sent is delivered
		l.settle(c)
		return
	}
	if !f.queued { // a queued flow goes on in its turn, within its budget
		l.pump(c, f) // what came while it waited
	}
}

func (l *loop) dropPending(f *flow) {
	if f.buf != nil {
		l.putBuf(f.buf)
		f.buf, f.pending = nil, nil
	}
}

// eof: f's source has no more. After a FIN it is passed on (half-close)
// and the other direction goes on; when both are done, the connection
// closes. The half-close waits for the end of the batch: when the other
// side's FIN is in the same batch (a connection per request), one close
// does it all. After a reset, the reset is passed on instead (settle).
func (l *loop) eof(c *conn, f *flow) {
	if f.eof {
		return
	}
	f.eof = true
	if c.firstFIN == 0 {
		c.firstFIN = c.sideOf(f.from)
	}
	if c.aborted != 0 {
		l.settle(c)
		return
	}
	if c.up.eof && c.down.eof {
		l.close(c, false)
		return
	}
	l.halfClosed = append(l.halfClosed, halfClose{c, f})
}

// reset: side x aborted (a reset, or an error on its socket). Nothing more
// goes to x; what x sent before its reset is read to the end and delivered,
// then the other side is reset too (settle). An abortLinger bounds it all.
func (l *loop) reset(c *conn, x side) {
	if c.closed || c.aborted&x != 0 {
		return
	}
	if c.aborted == 0 {
		l.srv.aborts.Add(1)
		if x == clientSide {
			c.endFor(accesslog.ClientReset)
		} else {
			c.endFor(accesslog.BackendReset)
		}
		c.deadline = l.now + int64(abortLinger)
		c.lingering = len(l.lingering)
		l.lingering = append(l.lingering, c)
		l.scheduleCheck(c.deadline)
	}
	c.aborted |= x
	into := c.flowInto(x)
	into.dead = true
	l.dropPending(into)
	out := c.flowFrom(x)
	out.hup = true
	if !out.eof {
		l.later(c, out) // not now: reset may run inside a pump of the other flow
	}
	l.settle(c)
}

// settle ends an aborted connection once what the reset side sent before
// its reset is delivered: the other side is reset as soon as its socket has
// sent everything (SIOCOUTQ is 0), so that the reset destroys nothing it
// should get; until then the loop's timers look again.
func (l *loop) settle(c *conn) {
	if c.closed || c.aborted == 0 {
		return
	}
	if c.aborted == clientSide|serverSide {
		l.close(c, false)
		return
	}
	out := c.flowFrom(c.aborted)
	if !out.eof || out.pending != nil {
		return // still delivering
	}
	live := c.fdOf((clientSide | serverSide) &^ c.aborted)
	if live >= 0 && unsent(live) > 0 && l.now < c.deadline {
		l.scheduleCheck(min(c.deadline, l.now+int64(lingerPoll)))
		return
	}
	l.abort(c)
}

// lingerPoll is how often a connection passing on a reset looks whether the
// other side has taken its last bytes.
const lingerPoll = 5 * time.Millisecond

// halfClose is a FIN to pass on at the end of the batch: f's, unless c has
// closed meanwhile.
type halfClose struct {
	c *conn
	f *flow
}

// shutdownHalfClosed passes on the FINs of the batch.
func (l *loop) shutdownHalfClosed() {
	for i, h := range l.halfClosed {
		if !h.c.closed && !h.f.dead {
			syscall.RawSyscall(syscall.SYS_SHUTDOWN, uintptr(h.f.to), syscall.SHUT_WR, 0)
		}
		l.halfClosed[i] = halfClose{}
	}
	l.halfClosed = l.halfClosed[:0]
}

// abort ends c with a reset to each side still there: a cut-off stream must
// not look complete.
func (l *loop) abort(c *conn) { l.close(c, true) }

// close ends c: both sockets (reset when rst), its buffers, its slot and
// the counters.
func (l *loop) close(c *conn, rst bool) {
	if c.closed {
		return
	}
	c.closed = true
	l.stopDialing(c)
	l.stopLingering(c)
	if rst && c.aborted&clientSide == 0 {
		setLingerZero(c.client)
	}
	l.closeSocket(c.client)
	if c.server >= 0 {
		if rst && c.aborted&serverSide == 0 {
			setLingerZero(c.server)
		}
		l.closeSocket(c.server)
	}
	l.dropPending(&c.up)
	l.dropPending(&c.down)
	last := l.conns[len(l.conns)-1]
	l.conns[c.index] = last
	last.index = c.index
	l.conns = l.conns[:len(l.conns)-1]
	if c.b != nil {
		c.b.AddBytes(c.up.n, c.down.n)
		l.srv.release(c.b)
	}
	if al := l.srv.accessLog.Load(); al != nil { // before the slot frees: a shutdown waits for it
		al.Send(l.record(c))
	}
	l.srv.gate.release()
	l.srv.conns.Done()
	if len(l.fdWait) > 0 { // descriptors freed: serve a waiting client now
		l.retryAt = l.now
		l.scheduleCheck(l.now)
	}
}

// endFor records why c ends, unless an earlier cause is known: the first
// cause is the one logged.
func (c *conn) endFor(e accesslog.End) {
	if c.why == 0 {
		c.why = e
	}
}

// record is c's access log line, once c has closed.
func (l *loop) record(c *conn) accesslog.Record {
	now := time.Now() // the wall clock now, not epoch's plus the time since: it may have been set
	r := accesslog.Record{
		Duration: now.Sub(epoch) - time.Duration(c.start),
		Listener: c.ln.addr,
		BytesIn:  c.up.n,
		BytesOut: c.down.n,
		Connect:  -1,
		TTFB:     -1,
		Retries:  c.retries,
		End:      c.why,
	}
	r.Start = now.Add(-r.Duration)
	if c.addrs != nil {
		r.Client = c.addrs.peer
		if c.upAt != 0 {
			r.BackendAddr = c.addrs.to
		}
	}
	if r.End == 0 { // a clean close: named by the first FIN
		r.End = accesslog.ClientFIN
		if c.firstFIN == serverSide {
			r.End = accesslog.BackendFIN
		}
	}
	switch {
	case c.b != nil:
		r.Backend = c.b.Name()
	case len(c.tried) > 0: // no backend: the last one tried
		r.Backend = c.tried[len(c.tried)-1].Name()
	}
	if c.upAt != 0 {
		r.Connect = time.Duration(c.upAt - c.start)
		if c.firstOut != 0 {
			from := c.upAt // the backend spoke first
			if c.firstIn != 0 && c.firstIn <= c.firstOut {
				from = c.firstIn
			}
			r.TTFB = time.Duration(c.firstOut - from)
		}
	}
	return r
}

func (l *loop) takeBuf() []byte {
	if n := len(l.spare); n > 0 {
		b := l.spare[n-1]
		l.spare = l.spare[:n-1]
		return b
	}
	return make([]byte, bufSize)
}

// maxSpare bounds the buffers a loop keeps for reuse.
const maxSpare = 64

func (l *loop) putBuf(b []byte) {
	if len(l.spare) < maxSpare {
		l.spare = append(l.spare, b[:bufSize])
	}
}

// ---------------------------------------------------------------- sockets

// socketTo opens a non-blocking socket and starts its connect to ap. It
// returns the socket and 0 (connected), EINPROGRESS (wait for writable) or
// the backend's refusal; or -1 and a local failure (no descriptor, no
// memory, no local port), or -1 and EINVAL for a zone with no interface.
func (l *loop) socketTo(ap netip.AddrPort) (int, syscall.Errno) {
	family, sa, salen, e := l.sockaddr(ap)
	if e != 0 {
		return -1, e
	}
	r, _, e := syscall.RawSyscall(syscall.SYS_SOCKET, uintptr(family), syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if e != 0 {
		return -1, e
	}
	fd := int(r)
	setSocketOptions(fd)
	_, _, e = syscall.RawSyscall(syscall.SYS_CONNECT, uintptr(fd), uintptr(sa), salen)
	switch e {
	case 0, syscall.EINPROGRESS:
		return fd, e
	case syscall.EADDRNOTAVAIL, syscall.EAGAIN, syscall.ENOBUFS, syscall.ENOMEM:
		closeFD(fd)
		return -1, e
	}
	return fd, e // refused or unreachable: the caller closes fd
}

// sockaddr fills the loop's socket address for ap, in the form connect(2)
// takes; no allocation.
func (l *loop) sockaddr(ap netip.AddrPort) (family int, sa unsafe.Pointer, salen uintptr, e syscall.Errno) {
	ip, port := ap.Addr().Unmap(), ap.Port()
	if ip.Is4() {
		l.sa4 = syscall.RawSockaddrInet4{Family: syscall.AF_INET, Addr: ip.As4()}
		putPort(&l.sa4.Port, port)
		return syscall.AF_INET, unsafe.Pointer(&l.sa4), unsafe.Sizeof(l.sa4), 0
	}
	l.sa6 = syscall.RawSockaddrInet6{Family: syscall.AF_INET6, Addr: ip.As16()}
	putPort(&l.sa6.Port, port)
	if zone := ip.Zone(); zone != "" {
		z, ok := l.zones[zone]
		if !ok || l.now-z.at > int64(backend.ResolveTTL) {
			id, err := backend.ScopeID(ip) // reads the interface table: once per TTL
			if err != nil {
				if backend.LocalFailure(err) {
					return 0, nil, 0, syscall.EMFILE
				}
				return 0, nil, 0, syscall.EINVAL
			}
			z = zoneID{id: id, at: l.now}
			if l.zones == nil {
				l.zones = map[string]zoneID{}
			}
			l.zones[zone] = z
		}
		l.sa6.Scope_id = z.id
	}
	return syscall.AF_INET6, unsafe.Pointer(&l.sa6), unsafe.Sizeof(l.sa6), 0
}

// zoneID is an IPv6 zone's interface index, as the loop last read it.
type zoneID struct {
	id uint32
	at int64 // monotime
}

// putPort stores port in network byte order.
func putPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}

// addrPortOf reads a socket address of the kernel's (AF_INET, AF_INET6;
// the zero AddrPort otherwise).
func addrPortOf(sa *syscall.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case syscall.AF_INET:
		p := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), portOf(p.Port))
	case syscall.AF_INET6:
		p := (*syscall.RawSockaddrInet6)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom16(p.Addr).Unmap(), portOf(p.Port))
	}
	return netip.AddrPort{}
}

// portOf reads a port in network byte order.
func portOf(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// setSocketOptions sets what a backend socket needs from its start: no
// Nagle delay. Urgent data inline (SO_OOBINLINE) is set when the backend
// first sends urgent data, keep-alive when the connection has been quiet a
// while (keepQuietAlive): a syscall each that most connections never need.
// Accepted sockets inherit all three from their listener (listenerOptions).
func setSocketOptions(fd int) {
	one := int32(1)
	syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY, uintptr(unsafe.Pointer(&one)), 4, 0)
}

// setOOBInline keeps urgent data in the stream, so that a byte sent with
// MSG_OOB is passed on in its place rather than dropped.
func setOOBInline(fd int) {
	one := int32(1)
	syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), syscall.SOL_SOCKET, syscall.SO_OOBINLINE, uintptr(unsafe.Pointer(&one)), 4, 0)
}

// setKeepAlive starts keep-alive probes after keepAliveIdle of quiet.
func setKeepAlive(fd int) {
	one, idle := int32(1), int32(keepAliveIdle/time.Second)
	syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, uintptr(unsafe.Pointer(&one)), 4, 0)
	syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, uintptr(unsafe.Pointer(&idle)), 4, 0)
}

// setLingerZero makes the next close of fd send a reset.
func setLingerZero(fd int) {
	lg := syscall.Linger{Onoff: 1, Linger: 0}
	syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), syscall.SOL_SOCKET, syscall.SO_LINGER, uintptr(unsafe.Pointer(&lg)), unsafe.Sizeof(lg), 0)
}

// sockError reads and clears fd's pending error (SO_ERROR).
func sockError(fd int) syscall.Errno {
	var v int32
	n := uint32(4)
	_, _, e := syscall.RawSyscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), syscall.SOL_SOCKET, syscall.SO_ERROR, uintptr(unsafe.Pointer(&v)), uintptr(unsafe.Pointer(&n)), 0)
	if e != 0 {
		return e
	}
	return syscall.Errno(v)
}

// unsent is how many bytes fd's socket still holds for its peer, sent or
// not, unacknowledged (SIOCOUTQ); 0 when it cannot tell.
func unsent(fd int) int {
	var v int32
	const siocoutq = 0x5411 // TIOCOUTQ
	if _, _, e := syscall.RawSyscall(syscall.SYS_IOCTL, uintptr(fd), siocoutq, uintptr(unsafe.Pointer(&v))); e != 0 {
		return 0
	}
	return int(v)
}

func closeFD(fd int) { syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0) }
