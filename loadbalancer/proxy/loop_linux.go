//go:build !lemonade_goroutines

package proxy

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/lemonade-lb/lemonade/loadbalancer/accesslog"
	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
)

// The Linux engine: a few event loops, each a goroutine locked to its thread
// with its own epoll set. A loop accepts from every listener (shared between
// the loops with EPOLLEXCLUSIVE), dials backends without blocking, and moves
// bytes with recvfrom/send through one buffer per loop: per message a read and a
// send, as HAProxy does, with no goroutine wake-up and no per-connection
// buffer unless the receiver is slow. The sockets are edge-triggered and
// registered once; a short read means the socket is drained.
//
// A loop owns its connections: only it touches their sockets and state.
// Other goroutines talk to it by posting functions (post), which it runs
// between two batches of events.

// bufSize is the most one read moves, and the size of the buffer that holds
// what a slow receiver has not taken yet.
const bufSize = 64 << 10

// engine starts the loops when the first listener is served and lets each
// stop once it has no listener and no connection left.
type loopEngine struct {
	srv   *Server
	mu    sync.Mutex
	loops []*loop
	want  int // how many loops, fixed while any runs
	// capWaiters are the loops that stopped accepting at the connection cap,
	// in order; a freed slot wakes the first. freeSlot notes a slot freed
	// while none waited yet, for the next loop about to wait.
	capWaiters []*loop
	freeSlot   bool
	capWakes   atomic.Uint64 // loops woken by a freed slot (tests)
}

var _ engine = (*loopEngine)(nil)

func newEngine(s *Server) engine { return &loopEngine{srv: s} }

// loopCount is how many loops run. By default one per two CPUs: on a small
// machine one loop moves the bytes faster per CPU second than two, which
// would contend with each other, with the Go runtime's own threads and with
// whatever else runs there (measured in docs/benchmarks.md).
func loopCount(set *Settings) int {
	if set.EventLoops > 0 {
		return set.EventLoops
	}
	return max(1, runtime.GOMAXPROCS(0)/2)
}

// each runs f on every loop and waits until all ran it.
func (e *loopEngine) each(f func(*loop)) {
	e.mu.Lock()
	loops := append([]*loop(nil), e.loops...)
	e.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range loops {
		wg.Add(1)
		if !l.post(func(l *loop) { f(l); wg.Done() }) {
			wg.Done()
		}
	}
	wg.Wait()
}

// slotFreed wakes the first loop waiting at the cap; the woken loop takes
// the slot or waits again. One slot, one loop: no thundering herd.
func (e *loopEngine) slotFreed() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for len(e.capWaiters) > 0 {
		l := e.capWaiters[0]
		e.capWaiters = e.capWaiters[1:]
		if l.post((*loop).slotWake) {
			e.capWakes.Add(1)
			return
		}
	}
	e.freeSlot = true
}

// waitForSlot queues l to be woken by a freed slot; it reports false, and
// queues nothing, when a slot freed since the last wake.
func (e *loopEngine) waitForSlot(l *loop) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.freeSlot {
		e.freeSlot = false
		return false
	}
	for _, w := range e.capWaiters {
		if w == l {
			return true
		}
	}
	e.capWaiters = append(e.capWaiters, l)
	return true
}

// settingsChanged makes every loop plan its idle checks anew and look at the
// cap again (it may have risen).
func (e *loopEngine) settingsChanged() {
	e.mu.Lock()
	e.capWaiters = nil
	e.mu.Unlock()
	e.each(func(l *loop) {
		l.nextIdle = 0
		l.resumeAtCap()
	})
}

// closeBackend aborts every connection to b.
func (e *loopEngine) closeBackend(b *backend.Backend) int {
	var n atomic.Int64
	e.each(func(l *loop) {
		for i := 0; i < len(l.conns); {
			if c := l.conns[i]; c.b == b {
				c.endFor(accesslog.DrainTimeout)
				l.abort(c) // moves the last one to i
				n.Add(1)
				continue
			}
			i++
		}
	})
	return int(n.Load())
}

// closeAll aborts every connection of every loop.
func (e *loopEngine) closeAll() {
	e.each(func(l *loop) {
		for len(l.conns) > 0 {
			l.conns[0].endFor(accesslog.Shutdown)
			l.abort(l.conns[0])
		}
	})
}

// serve accepts connections on ln until ctx ends, then closes ln and
// returns. When ctx ends, the connections already waiting in the backlog
// are still accepted and proxied for a short grace. ln itself is closed at
// once: the loops use their own descriptor for the same socket.
func (e *loopEngine) serve(ctx context.Context, ln *net.TCPListener) error {
	s := e.srv
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	fd, err := takeListener(ln)
	if err != nil {
		return err
	}
	lst := &listener{fd: fd, addr: addr}
	e.mu.Lock()
	if len(e.loops) == 0 {
		e.want = loopCount(s.settings.Load())
	}
	for len(e.loops) < e.want {
		l, err := newLoop(s)
		if err != nil {
			for _, l := range e.loops {
				l.post(func(*loop) {}) // a loop with nothing to do then exits
			}
			e.mu.Unlock()
			syscall.Close(fd)
			return err
		}
		e.loops = append(e.loops, l)
		go l.run()
	}
	loops := append([]*loop(nil), e.loops...)
	for _, l := range loops {
		l.post(func(l *loop) { l.addListener(lst) })
	}
	e.mu.Unlock()

	<-ctx.Done()
	grace := time.NewTimer(backlogGrace)
	<-grace.C
	var removed sync.WaitGroup
	for _, l := range loops {
		removed.Add(1)
		if !l.post(func(l *loop) { l.removeListener(lst); removed.Done() }) {
			removed.Done()
		}
	}
	removed.Wait()
	syscall.Close(fd)
	return nil
}

// takeListener returns a non-blocking descriptor of ln's socket and closes
// ln, which takes the socket out of the Go runtime's poller.
func takeListener(ln *net.TCPListener) (int, error) {
	defer ln.Close()
	rc, err := ln.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(s uintptr) {
		var r uintptr
		var e syscall.Errno
		r, _, e = syscall.RawSyscall(syscall.SYS_FCNTL, s, syscall.F_DUPFD_CLOEXEC, 0)
		if e != 0 {
			derr = e
			return
		}
		fd = int(r)
		setListenerOptions(fd) // inherited by every accepted socket (a listener not made by Listen)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	return fd, nil
}

// listener is a listening socket served by every loop.
type listener struct {
	fd   int
	addr netip.AddrPort // for the access log
}

// slot says what a descriptor of a loop belongs to. gen tells a stale event
// (for a descriptor closed and reused in the same batch) from a live one.
type slot struct {
	gen uint32
	c   *conn
	ln  *listener
}

type loop struct {
	srv    *Server
	eng    *loopEngine
	epfd   int
	wakeFD int // eventfd: post writes it, the loop reads it
	events []syscall.EpollEvent
	buf    []byte   // what one read brings in, sent on at once
	spare  [][]byte // free bufSize buffers for slow receivers
	slots  []slot   // by descriptor
	gen    uint32
	now    int64 // monotime, taken after each epoll_wait
	sa4    syscall.RawSockaddrInet4
	sa6    syscall.RawSockaddrInet6
	peer   syscall.RawSockaddrAny // accept's client address
	peerN  uint32

	listeners []*listener
	watching  bool  // the listeners are in the epoll set
	atCap     bool  // not accepting: the connection cap is reached
	outOfFDs  bool  // not accepting: out of descriptors (or memory)
	retryAt   int64 // when to try again after running out of descriptors; 0 = not waiting

	conns         []*conn           // every open connection, for idle checks
	halfClosed    []halfClose       // FINs to pass on at the end of the batch
	again         []pumpLater       // flows with more to read after their turn
	spareAgain    []pumpLater       // again's other buffer
	dialing       []*conn           // connections waiting for their backend's answer
	lingering     []*conn           // connections passing on a reset
	fdWait        []*conn           // clients waiting for a descriptor, in order
	nextCheck     int64             // earliest timer; 0 = none
	nextIdle      int64             // next idle check; 0 = none
	nextKeepAlive int64             // next keepQuietAlive; 0 = none
	lastWarn      int64             // when warnLocal last logged
	zones         map[string]zoneID // IPv6 zones' interface indexes
	// longestTurn is the most one flow moved in one turn: at most
	// turnBudget (tests).
	longestTurn int

	mu      sync.Mutex
	inbox   []func(*loop)
	stopped bool // the loop has exited: posts are dropped
}

func newLoop(s *Server) (*loop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wfd, _, e := syscall.RawSyscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if e != 0 {
		syscall.Close(epfd)
		return nil, e
	}
	l := &loop{
		srv:    s,
		eng:    s.eng.(*loopEngine),
		epfd:   epfd,
		wakeFD: int(wfd),
		events: make([]syscall.EpollEvent, 256),
		buf:    make([]byte, bufSize),
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(wfd)}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, int(wfd), &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(int(wfd))
		return nil, err
	}
	return l, nil
}

// post runs f on the loop, between two batches of events; it reports false
// when the loop has exited and f will never run.
func (l *loop) post(f func(*loop)) bool {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return false
	}
	l.inbox = append(l.inbox, f)
	first := len(l.inbox) == 1
	l.mu.Unlock()
	if first {
		one := uint64(1)
		syscall.RawSyscall(syscall.SYS_WRITE, uintptr(l.wakeFD), uintptr(unsafe.Pointer(&one)), 8)
	}
	return true
}

func (l *loop) runInbox() {
	var n uint64
	syscall.RawSyscall(syscall.SYS_READ, uintptr(l.wakeFD), uintptr(unsafe.Pointer(&n)), 8)
	l.mu.Lock()
	inbox := l.inbox
	l.inbox = nil
	l.mu.Unlock()
	for _, f := range inbox {
		f(l)
	}
}

func (l *loop) run() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	timeout := -1
	for {
		if len(l.again) > 0 {
			timeout = 0 // flows left mid-way: look at the other events, then on
		}
		n, err := l.wait(timeout)
		if err != 0 && err != syscall.EINTR {
			panic("proxy: epoll_wait: " + err.Error()) // EBADF/EFAULT/EINVAL: a bug here
		}
		l.now = monotime()
		for i := range n {
			ev := &l.events[i]
			l.dispatch(int(ev.Fd), uint32(ev.Pad), ev.Events)
		}
		l.pumpAgain()
		timeout = l.checkTimers()
		l.shutdownHalfClosed()
		if len(l.listeners) == 0 && len(l.conns) == 0 && l.exit() {
			return
		}
	}
}

// pumpAgain gives the flows left mid-way in the last turn one more budget
// each; those that still have more go on after the next batch of events.
func (l *loop) pumpAgain() {
	if len(l.again) == 0 {
		return
	}
	turn := l.again
	l.again = l.spareAgain[:0]
	for i, p := range turn {
		turn[i] = pumpLater{}
		p.f.queued = false
		if !p.c.closed {
			l.pump(p.c, p.f)
		}
	}
	l.spareAgain = turn[:0]
}

// wait returns the next batch of events. Under load there always is one,
// so it first looks without blocking, in a raw syscall that leaves the
// scheduler alone; only when nothing is ready does it block, in a syscall
// the scheduler knows about (it may lend the thread's P meanwhile).
func (l *loop) wait(timeout int) (int, syscall.Errno) {
	ptr := uintptr(unsafe.Pointer(&l.events[0]))
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(l.epfd), ptr, uintptr(len(l.events)), 0, 0, 0)
	if e != 0 || n > 0 || timeout == 0 {
		return int(n), e
	}
	n, _, e = syscall.Syscall6(syscall.SYS_EPOLL_WAIT, uintptr(l.epfd), ptr, uintptr(len(l.events)), uintptr(timeout), 0, 0)
	return int(n), e
}

// exit stops the loop if nothing can reach it any more: no listener, no
// connection and nothing posted. It runs under the engine's lock, which
// serve holds to post a new listener.
func (l *loop) exit() bool {
	e := l.eng
	e.mu.Lock()
	defer e.mu.Unlock()
	l.mu.Lock()
	l.stopped = len(l.inbox) == 0
	l.mu.Unlock()
	if !l.stopped {
		return false
	}
	e.loops = remove(e.loops, l)
	e.capWaiters = remove(e.capWaiters, l)
	syscall.Close(l.epfd)
	syscall.Close(l.wakeFD)
	return true
}

func (l *loop) dispatch(fd int, gen uint32, ev uint32) {
	if fd == l.wakeFD {
		l.runInbox()
		return
	}
	if fd >= len(l.slots) || l.slots[fd].gen != gen {
		return // the descriptor was closed earlier in this batch
	}
	s := &l.slots[fd]
	if s.ln != nil {
		l.accept(s.ln)
		return
	}
	c := s.c
	if c == nil || c.closed {
		return
	}
	const hangup = syscall.EPOLLRDHUP | syscall.EPOLLHUP | syscall.EPOLLERR
	if c.dialing >= 0 || c.waitingFD {
		if fd == c.client {
			// A reset client is gone: drop its dial. A FIN is not: the
			// client may have sent its request and wait for the answer.
			if ev&syscall.EPOLLERR != 0 && sockError(fd) != 0 {
				l.abandon(c)
				return
			}
			if ev&hangup != 0 {
				c.up.hup = true // the edge is consumed: read to the end once connected
			}
			if ev&syscall.EPOLLPRI != 0 {
				c.up.urgent = true
			}
			return
		}
		if ev&(syscall.EPOLLOUT|syscall.EPOLLERR|syscall.EPOLLHUP) == 0 {
			return
		}
		l.dialDone(c, ev)
		if c.closed || c.dialing >= 0 || c.waitingFD || l.slots[fd].gen != gen {
			return // still dialing, maybe another address on a reused descriptor
		}
		// Connected: the backend may have spoken already, in this very edge.
	}
	x := c.sideOf(fd)
	from, to := c.flowFrom(x), c.flowInto(x)
	if ev&hangup != 0 {
		from.hup = true // the edge is consumed: read to the end from now on
	}
	if ev&syscall.EPOLLPRI != 0 {
		from.urgent = true
		if fd == c.server && !c.oobInline {
			// Urgent data from the backend: keep it in the stream. Set now,
			// before the read that would otherwise skip the urgent byte,
			// rather than on every backend socket (a syscall per connection).
			setOOBInline(fd)
			c.oobInline = true
		}
	}
	if ev&syscall.EPOLLERR != 0 && sockError(fd) != 0 {
		// A reset, seen even on a side that is not being read (after its
		// FIN, or paused behind a full receiver): it ends the connection.
		l.reset(c, x)
	}
	if ev&(syscall.EPOLLIN|syscall.EPOLLPRI|hangup) != 0 && !from.queued {
		l.pump(c, from) // what the peer sent before anything else (a queued flow goes on in its turn)
	}
	if ev&syscall.EPOLLOUT != 0 {
		l.flush(c, to)
	}
}

// growSlots makes room in the slot table for descriptor fd.
func (l *loop) growSlots(fd int) {
	for fd >= len(l.slots) {
		l.slots = append(l.slots, make([]slot, max(len(l.slots), 64))...)
	}
}

// register adds fd to the epoll set, edge-triggered, for both directions.
func (l *loop) register(fd int, c *conn) syscall.Errno {
	l.growSlots(fd)
	l.gen++
	l.slots[fd] = slot{gen: l.gen, c: c}
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLPRI | syscall.EPOLLOUT | syscall.EPOLLRDHUP | epollET,
		Fd:     int32(fd),
		Pad:    int32(l.gen),
	}
	return epollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev)
}

// closeSocket closes a socket of a connection; closing takes it out of the
// epoll set.
func (l *loop) closeSocket(fd int) {
	l.slots[fd] = slot{}
	closeFD(fd)
}

// ---------------------------------------------------------------- accept

func (l *loop) addListener(ln *listener) {
	l.growSlots(ln.fd)
	l.listeners = append(l.listeners, ln)
	if l.watching || len(l.listeners) == 1 && !l.atCap && !l.outOfFDs {
		l.watching = true
		l.watch(ln)
	}
}

func (l *loop) removeListener(ln *listener) {
	if l.watching {
		l.unwatch(ln)
		// Take what is queued now: with EPOLLEXCLUSIVE, a client whose
		// wake-up came to this loop wakes no one else, and on a socket
		// shared with another balancer (proxy.reuse_port) it would wait
		// there for the next client's.
		l.accept(ln)
	}
	l.listeners = remove(l.listeners, ln)
	l.slots[ln.fd] = slot{}
}

// watch adds ln level-triggered, so a backlog left for the next batch is
// reported again, and exclusive, so one new client wakes one loop.
func (l *loop) watch(ln *listener) {
	l.gen++
	l.slots[ln.fd] = slot{gen: l.gen, ln: ln}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | epollExclusive, Fd: int32(ln.fd), Pad: int32(l.gen)}
	e := epollCtl(l.epfd, syscall.EPOLL_CTL_ADD, ln.fd, &ev)
	if e == syscall.EINVAL { // a kernel before 4.5: every loop wakes for a client
		ev.Events = syscall.EPOLLIN
		e = epollCtl(l.epfd, syscall.EPOLL_CTL_ADD, ln.fd, &ev)
	}
	if e != 0 {
		l.srv.log.Error("cannot watch listener", "error", e.Error())
	}
}

func (l *loop) unwatch(ln *listener) {
	ev := syscall.EpollEvent{}
	epollCtl(l.epfd, syscall.EPOLL_CTL_DEL, ln.fd, &ev)
}

// updateWatch watches the listeners unless the loop is at the cap or out
// of descriptors.
func (l *loop) updateWatch() {
	want := !l.atCap && !l.outOfFDs
	if want == l.watching {
		return
	}
	l.watching = want
	for _, ln := range l.listeners {
		if want {
			l.watch(ln)
		} else {
			l.unwatch(ln)
		}
	}
}

const (
	epollExclusive = 1 << 28 // EPOLLEXCLUSIVE
	epollET        = 1 << 31 // EPOLLET; the syscall package's constant is negative
)

// pauseAtCap stops accepting until a freed slot wakes this loop.
func (l *loop) pauseAtCap() {
	if !l.eng.waitForSlot(l) {
		return // a slot freed meanwhile: go on accepting
	}
	l.atCap = true
	l.updateWatch()
}

// slotWake: a slot freed for this loop. One that no longer waits (the
// settings changed meanwhile) or cannot accept (out of descriptors) passes
// it on.
func (l *loop) slotWake() {
	if !l.atCap || l.outOfFDs {
		l.eng.slotFreed()
	}
	l.resumeAtCap()
}

// resumeAtCap accepts again after a slot freed or the cap rose.
func (l *loop) resumeAtCap() {
	if !l.atCap {
		return
	}
	l.atCap = false
	l.updateWatch()
}

// pauseForFDs stops accepting until retryAt.
func (l *loop) pauseForFDs() {
	l.outOfFDs = true
	l.updateWatch()
	if l.retryAt == 0 {
		l.retryAt = l.now + int64(fdRetry)
		l.scheduleCheck(l.retryAt)
	}
}

// fdRetry is how long the loop rests after running out of descriptors or
// memory before it tries again (sooner when one of its connections closes).
const fdRetry = 100 * time.Millisecond

// acceptBatch bounds the accepts per event, so that one loop does not take
// a whole burst while the others idle.
const acceptBatch = 16

func (l *loop) accept(ln *listener) {
	for range acceptBatch {
		if !l.watching {
			return
		}
		if !l.srv.gate.tryAcquire() {
			l.pauseAtCap() // clients wait in the backlog; a freed slot resumes
			continue
		}
		// The client's address only for the access log: the kernel copies
		// it out otherwise for nothing.
		logging := l.srv.accessLog.Load() != nil
		var peer, peerN uintptr
		if logging {
			l.peerN = syscall.SizeofSockaddrAny
			peer, peerN = uintptr(unsafe.Pointer(&l.peer)), uintptr(unsafe.Pointer(&l.peerN))
		}
		r, _, e := syscall.RawSyscall6(syscall.SYS_ACCEPT4, uintptr(ln.fd), peer, peerN, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0, 0)
		switch e {
		case 0:
		case syscall.EAGAIN:
			l.srv.gate.release()
			return
		case syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM:
			// Out of descriptors or memory: wait, do not spin.
			l.srv.gate.release()
			l.warnLocal("accept failed: clients wait in the backlog", e)
			l.pauseForFDs()
			return
		default: // the client is gone (ECONNABORTED, a network error): next
			l.srv.gate.release()
			continue
		}
		l.srv.accepted.Add(1)
		l.srv.conns.Add(1)
		var addrs *connAddrs
		if logging {
			addrs = &connAddrs{peer: addrPortOf(&l.peer)}
		}
		l.open(int(r), ln, addrs)
	}
}

// warnLocal logs a failure of this host, at most once a second per loop.
func (l *loop) warnLocal(msg string, e syscall.Errno) {
	if l.now-l.lastWarn < int64(time.Second) && l.lastWarn != 0 {
		return
	}
	l.lastWarn = l.now
	l.srv.log.Warn(msg, "error", e.Error())
}

// ---------------------------------------------------------------- timers

func (l *loop) scheduleCheck(at int64) {
	if l.nextCheck == 0 || at < l.nextCheck {
		l.nextCheck = at
	}
}

// checkTimers fails the dials past their deadline, ends the resets passed
// on, serves the clients waiting for a descriptor, closes the connections
// idle for longer than the idle timeout, and returns epoll_wait's timeout
// in ms until the next check (-1: none).
func (l *loop) checkTimers() int {
	idle := l.idleTimeout()
	if idle > 0 && len(l.conns) > 0 && l.nextIdle == 0 {
		l.nextIdle = l.now + idleCheckEvery(idle)
		l.scheduleCheck(l.nextIdle)
	}
	if len(l.conns) > 0 && l.nextKeepAlive == 0 {
		l.nextKeepAlive = l.now + int64(keepAliveSweep)
		l.scheduleCheck(l.nextKeepAlive)
	}
	if l.nextCheck == 0 {
		return -1
	}
	if l.now < l.nextCheck {
		return waitMillis(l.nextCheck - l.now)
	}
	l.nextCheck = 0
	l.checkDials()
	l.checkLingering()
	l.checkFDWaits()
	if l.nextIdle != 0 && l.now >= l.nextIdle {
		l.nextIdle = 0
		for i := 0; idle > 0 && i < len(l.conns); {
			c := l.conns[i]
			if c.b != nil && c.dialing < 0 && c.lingering < 0 && l.now-c.last >= int64(idle) {
				// A slow reader draining a socket's send queue is not idle,
				// though it wakes no event: the queue moved since the last
				// look.
				q := unsent(c.client) + unsent(c.server)
				if q > 0 && q != c.outq {
					c.outq, c.last = q, l.now
					i++
					continue
				}
				// Bytes that a close would lose (in a buffer of the
				// connection, or not yet read from a socket): the stream is
				// cut, so a reset, not a FIN that would make it look
				// complete. What a send queue holds still goes out.
				cut := c.up.pending != nil || c.down.pending != nil || hasUnread(c.client) || hasUnread(c.server)
				c.endFor(accesslog.IdleTimeout)
				l.close(c, cut) // moves the last one to i
				continue
			}
			i++
		}
		if idle > 0 && len(l.conns) > 0 {
			l.nextIdle = l.now + idleCheckEvery(idle)
		}
	}
	if l.nextIdle != 0 {
		l.scheduleCheck(l.nextIdle)
	}
	if l.nextKeepAlive != 0 && l.now >= l.nextKeepAlive {
		l.nextKeepAlive = 0
		l.keepQuietAlive()
		if len(l.conns) > 0 {
			l.nextKeepAlive = l.now + int64(keepAliveSweep)
		}
	}
	if l.nextKeepAlive != 0 {
		l.scheduleCheck(l.nextKeepAlive)
	}
	if l.nextCheck == 0 {
		return -1
	}
	return waitMillis(l.nextCheck - l.now)
}

// keepAliveSweep is how often a loop looks for connections quiet for that
// long whose backend socket has no keep-alive probes yet (a var: tests
// shorten it).
var keepAliveSweep = time.Minute

// keepQuietAlive turns keep-alive probes on for the backend sockets of the
// connections quiet since the last sweep, so that a backend host that
// vanished without a reset ends them; short connections never pay for it.
func (l *loop) keepQuietAlive() {
	for _, c := range l.conns {
		if !c.keptAlive && c.server >= 0 && c.dialing < 0 && l.now-c.last >= int64(keepAliveSweep) {
			setKeepAlive(c.server)
			c.keptAlive = true
		}
	}
}

// checkDials gives up the dials past their deadline: the backend's next
// address, or, with none left, another backend.
func (l *loop) checkDials() {
	for i := 0; i < len(l.dialing); {
		c := l.dialing[i]
		if l.now < c.deadline {
			l.scheduleCheck(c.deadline)
			i++
			continue
		}
		l.stopDialing(c) // moves the last one to i
		l.closeSocket(c.server)
		c.server = -1
		c.addr++
		if l.connect(c, errConnectTimeout) == dialFailed {
			c.tries--
			l.dial(c)
		}
	}
}

// checkLingering ends the resets passed on whose last bytes are delivered
// or whose time is up.
func (l *loop) checkLingering() {
	for i := 0; i < len(l.lingering); {
		c := l.lingering[i]
		if l.now >= c.deadline {
			l.abort(c)
		} else {
			l.settle(c)
		}
		if c.closed {
			continue // close moved the last one to i
		}
		l.scheduleCheck(c.deadline)
		i++
	}
}

// checkFDWaits dials for the clients waiting for a descriptor, in order,
// until one still finds none; with none left waiting, the loop accepts
// again.
func (l *loop) checkFDWaits() {
	if l.retryAt == 0 {
		return
	}
	if l.now < l.retryAt {
		l.scheduleCheck(l.retryAt)
		return
	}
	l.retryAt = 0
	waiting := l.fdWait
	l.fdWait = nil
	for i, c := range waiting {
		if c.closed {
			continue
		}
		c.waitingFD = false
		if l.now >= c.fdDeadline {
			l.warnLocal("a client waited too long for a descriptor: closed", syscall.EMFILE)
			c.endFor(accesslog.NoDescriptor)
			l.close(c, false)
			continue
		}
		l.dial(c)
		if c.waitingFD { // still none: the rest wait on, in order
			l.fdWait = append(l.fdWait, waiting[i+1:]...)
			break
		}
	}
	if len(l.fdWait) == 0 {
		l.outOfFDs = false
		l.updateWatch()
		return
	}
	l.pauseForFDs()
}

// waitMillis is epoll_wait's timeout for a wait of ns, rounded up and at
// most a minute (an int32 of milliseconds holds only 24 days).
func waitMillis(ns int64) int {
	return int(min((max(ns, 0)+999_999)/1_000_000, 60_000))
}

// idleCheckEvery is the period of the idle checks: a quarter of the
// timeout, so a connection closes at most 1.25 timeouts after its last
// bytes; at least a millisecond.
func idleCheckEvery(idle time.Duration) int64 { return int64(max(idle/4, time.Millisecond)) }

// idleTimeout is the current setting, for open connections too.
func (l *loop) idleTimeout() time.Duration { return l.srv.settings.Load().IdleTimeout }

// ---------------------------------------------------------------- syscalls

// The sockets are non-blocking, so these never block: raw syscalls skip the
// scheduler's bookkeeping around a call that might.

// recv is recvfrom(2), which skips the file-position locking of read(2).
func recv(fd int, b []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0, 0)
	return int(n), e
}

// send writes with MSG_NOSIGNAL: a peer gone is an error, not a SIGPIPE.
func send(fd int, b []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), syscall.MSG_NOSIGNAL, 0, 0)
	return int(n), e
}

func epollCtl(epfd, op, fd int, ev *syscall.EpollEvent) syscall.Errno {
	_, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return e
}

// epoch makes monotime monotonic: wall-clock steps must not time out dials
// or idle connections.
var epoch = time.Now()

func monotime() int64 { return int64(time.Since(epoch)) }

func remove[T comparable](s []T, x T) []T {
	for i, y := range s {
		if y == x {
			return append(s[:i], s[i+1:]...)
		}
	}
	return s
}
