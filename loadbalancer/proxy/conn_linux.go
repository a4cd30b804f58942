//go:build !lemonade_goroutines

package proxy

import (
	"syscall"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
)

// A connection's life in its loop: dial (with retries and a timeout), then
// bytes both ways with half-close, then close. See loop_linux.go for the
// loop that drives it.

// conn is one proxied connection, owned by its loop.
type conn struct {
	loop           *loop
	client, server int // descriptors; server is -1 before the first dial
	b              *backend.Backend
	set            *Settings
	route          *route
	tries          int   // dials left
	dialStart      int64 // monotime
	deadline       int64 // dial deadline, monotime
	dialing        int   // index in loop.dialing, or -1
	index          int   // index in loop.conns
	up, down       flow  // client → backend, backend → client
	firstIn        int64 // monotime of the client's first bytes; 0 = none yet
	sampled        bool  // the response-time sample is taken
	last           int64 // monotime of the last bytes either way
	closed         bool
}

// flow is one direction of a connection.
type flow struct {
	from, to int
	pending  []byte // read from `from`, not yet taken by `to`
	buf      []byte // pending's buffer, back to loop.spare when sent
	eof      bool
	hup      bool // the source's FIN or an error was reported
	n        int64
}

// Close ends the connection from any goroutine (a drain's end, shutdown).
func (c *conn) Close() error {
	c.loop.post(func(l *loop) { l.close(c) })
	return nil
}

func (l *loop) open(fd int) {
	setNoDelay(fd)
	c := &conn{
		loop:    l,
		client:  fd,
		server:  -1,
		set:     l.srv.settings.Load(),
		route:   l.srv.route.Load(),
		dialing: -1,
		index:   len(l.conns),
		last:    l.now,
	}
	l.conns = append(l.conns, c)
	c.tries = c.set.Retries + 1
	if l.register(fd, c) != 0 {
		l.close(c)
		return
	}
	l.dial(c)
}

// dial connects c to the next backend the strategy picks, from the table
// in force at each try; when no backend is eligible or every try failed, it
// closes the client.
func (l *loop) dial(c *conn) {
	for ; c.tries > 0; c.tries-- {
		if l.srv.closing.Load() { // shutting down: no new backend connection
			l.close(c)
			return
		}
		c.route = l.srv.route.Load()
		if c.route.t == nil {
			break
		}
		b := c.route.t.Strategy.Pick(c.route.t.Backends)
		if b == nil {
			break
		}
		b.Acquire()
		b.Attach(c) // from here a drain's end or a shutdown closes it too
		c.b = b
		c.dialStart = monotime()
		d := c.route.dests[b]
		if d.err != nil {
			l.dialFailed(c, d.err.Error())
			continue
		}
		fd, e := connect(d)
		if fd < 0 {
			l.localFailure(c, "cannot open a backend connection", e)
			return
		}
		if e != 0 && e != syscall.EINPROGRESS {
			syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0)
			l.dialFailed(c, e.Error())
			continue
		}
		c.server = fd
		if errno := l.register(fd, c); errno != 0 {
			l.localFailure(c, "cannot watch a backend connection", errno)
			return
		}
		if e == 0 {
			l.connected(c)
			return
		}
		c.deadline = c.dialStart + int64(c.set.ConnectTimeout)
		c.dialing = len(l.dialing)
		l.dialing = append(l.dialing, c)
		l.scheduleCheck(c.deadline)
		return
	}
	l.srv.noBackend.Add(1)
	l.close(c)
}

// dialDone runs when the backend socket of a dialing connection is writable
// or failed: the connect's outcome is known. Writable without an error is a
// success; otherwise SO_ERROR tells a refused or unreachable backend (a
// failed dial) from one that accepted and then closed or reset (connected:
// the client gets what there is, then the end).
func (l *loop) dialDone(c *conn, ev uint32) {
	l.stopDialing(c)
	if ev&(syscall.EPOLLERR|syscall.EPOLLHUP) == 0 {
		l.connected(c)
		return
	}
	soerr, err := syscall.GetsockoptInt(c.server, syscall.SOL_SOCKET, syscall.SO_ERROR)
	switch {
	case err != nil:
		l.dialFailed(c, err.Error())
	case soerr == 0 || soerr == int(syscall.ECONNRESET) || soerr == int(syscall.EPIPE):
		l.connected(c)
		return
	default:
		l.dialFailed(c, syscall.Errno(soerr).Error())
	}
	c.tries--
	l.dial(c)
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

// localFailure closes c after a failure of this host (out of descriptors,
// memory or ports): not the backend's fault, so its health is left alone.
func (l *loop) localFailure(c *conn, msg string, e syscall.Errno) {
	l.warnLocal(msg, e)
	l.close(c)
}

// dialFailed records a failed dial, which marks the backend down at once
// (passive health; the active checks bring it back).
func (l *loop) dialFailed(c *conn, reason string) {
	if c.server >= 0 {
		l.closeFD(c.server)
		c.server = -1
	}
	b := c.b
	c.b = nil
	b.Detach(c)
	b.Release()
	b.DialFailed()
	b.Transition(l.srv.log, false, "dial failed: "+reason)
}

func (l *loop) connected(c *conn) {
	c.b.Connected(time.Duration(monotime() - c.dialStart))
	if l.srv.closing.Load() { // shutdown's CloseAll is on its way
		l.close(c)
		return
	}
	c.up.from, c.up.to = c.client, c.server
	c.down.from, c.down.to = c.server, c.client
	c.last = l.now
	// The client may have sent bytes (or its FIN, noted in up.hup) while the
	// dial went on: read them now, their edge is gone.
	l.pump(c, &c.up)
}

// pump moves what f's source has to its destination. A short read means
// the source is empty: an edge-triggered socket reports new bytes with a new
// edge. Once the peer's FIN was reported (f.hup), it reads to the end.
func (l *loop) pump(c *conn, f *flow) {
	for !c.closed && f.pending == nil && !f.eof {
		n, e := recv(f.from, l.buf)
		switch {
		case e == syscall.EAGAIN:
			return
		case e == syscall.EINTR:
			continue
		case e != 0:
			l.close(c)
			return
		case n == 0:
			l.eof(c, f)
			return
		}
		l.arrived(c, f)
		f.n += int64(n)
		if !l.forward(c, f, l.buf[:n]) || (n < len(l.buf) && !f.hup) {
			return
		}
	}
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
	if c.firstIn != 0 {
		c.b.ObserveLatency(time.Duration(monotime() - c.firstIn))
	}
	c.sampled = true // or the backend spoke first: no sample
}

// forward writes data to f's destination; what it does not take waits in a
// buffer (and f reads no more) until the destination is writable again.
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
			l.close(c)
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
			l.close(c)
			return
		}
	}
	l.putBuf(f.buf)
	f.buf, f.pending = nil, nil
	l.pump(c, f) // what came while it waited
}

// eof: f's source sent its FIN. Pass it on (half-close) and let the other
// direction go on; when both are done, close. The half-close waits for the
// end of the batch: when the other side's FIN is in the same batch (a
// connection per request), one close does it all.
func (l *loop) eof(c *conn, f *flow) {
	f.eof = true
	if c.up.eof && c.down.eof {
		l.close(c)
		return
	}
	l.halfClosed = append(l.halfClosed, halfClose{c, f})
}

// halfClose is a FIN to pass on at the end of the batch: f's, unless c has
// closed meanwhile.
type halfClose struct {
	c *conn
	f *flow
}

// shutdownHalfClosed passes on the FINs of the batch.
func (l *loop) shutdownHalfClosed() {
	for i, h := range l.halfClosed {
		if !h.c.closed {
			syscall.RawSyscall(syscall.SYS_SHUTDOWN, uintptr(h.f.to), syscall.SHUT_WR, 0)
		}
		l.halfClosed[i] = halfClose{}
	}
	l.halfClosed = l.halfClosed[:0]
}

// close ends c: both sockets, its buffers, its slot and the counters.
func (l *loop) close(c *conn) {
	if c.closed {
		return
	}
	c.closed = true
	l.stopDialing(c)
	l.closeFD(c.client)
	if c.server >= 0 {
		l.closeFD(c.server)
	}
	for _, f := range []*flow{&c.up, &c.down} {
		if f.buf != nil {
			l.putBuf(f.buf)
			f.buf, f.pending = nil, nil
		}
	}
	last := l.conns[len(l.conns)-1]
	l.conns[c.index] = last
	last.index = c.index
	l.conns = l.conns[:len(l.conns)-1]
	if c.b != nil {
		c.b.AddBytes(c.up.n, c.down.n)
		c.b.Detach(c)
		c.b.Release()
	}
	l.srv.gate.release()
	l.srv.conns.Done()
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
