//go:build !lemonade_goroutines

package proxy

import (
	"context"
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"
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
type engine struct {
	mu    sync.Mutex
	loops []*loop
	want  int // how many loops, fixed while any runs
}

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

func (e *engine) init() {}

// each runs f on every loop.
func (e *engine) each(f func(*loop)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, l := range e.loops {
		l.post(f)
	}
}

// slotFreed makes every loop retry the listeners it stopped at the cap.
func (e *engine) slotFreed() { e.each((*loop).resumeAccepts) }

// idleTimeoutChanged makes every loop plan its idle checks anew.
func (e *engine) idleTimeoutChanged() { e.each(func(l *loop) { l.nextIdle = 0 }) }

// closeAll closes every connection of every loop.
func (e *engine) closeAll() {
	e.each(func(l *loop) {
		for len(l.conns) > 0 {
			l.close(l.conns[0])
		}
	})
}

// Serve accepts connections on ln until ctx ends, then closes ln and
// returns; connections already accepted go on (see Wait, CloseAll). When ctx
// ends, the connections already waiting in the backlog are still accepted
// and proxied for a short grace. ln itself is closed at once: the loops use
// their own descriptor for the same socket.
func (s *Server) Serve(ctx context.Context, ln *net.TCPListener) error {
	fd, err := takeListener(ln)
	if err != nil {
		return err
	}
	lst := &listener{fd: fd}
	s.eng.mu.Lock()
	if len(s.eng.loops) == 0 {
		s.eng.want = loopCount(s.settings.Load())
	}
	for len(s.eng.loops) < s.eng.want {
		l, err := newLoop(s)
		if err != nil {
			for _, l := range s.eng.loops {
				l.post(func(*loop) {}) // a loop with nothing to do then exits
			}
			s.eng.mu.Unlock()
			syscall.Close(fd)
			return err
		}
		s.eng.loops = append(s.eng.loops, l)
		go l.run()
	}
	loops := append([]*loop(nil), s.eng.loops...)
	for _, l := range loops {
		l.post(func(l *loop) { l.addListener(lst) })
	}
	s.eng.mu.Unlock()

	<-ctx.Done()
	grace := time.NewTimer(backlogGrace)
	<-grace.C
	var removed sync.WaitGroup
	for _, l := range loops {
		removed.Add(1)
		l.post(func(l *loop) { l.removeListener(lst); removed.Done() })
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
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	return fd, nil
}

// listener is a listening socket served by every loop.
type listener struct{ fd int }

// slot says what a descriptor of a loop belongs to. gen tells a stale event
// (for a descriptor closed and reused in the same batch) from a live one.
type slot struct {
	gen uint32
	c   *conn
	ln  *listener
}

type loop struct {
	srv    *Server
	epfd   int
	wakeFD int // eventfd: post writes it, the loop reads it
	events []syscall.EpollEvent
	buf    []byte   // what one read brings in, sent on at once
	spare  [][]byte // free bufSize buffers for slow receivers
	slots  []slot   // by descriptor
	gen    uint32
	now    int64 // monotime, taken after each epoll_wait

	listeners  []*listener
	paused     []*listener // listeners left alone at the connection cap or out of descriptors
	retryAt    int64       // when to retry paused listeners out of descriptors; 0 = not waiting
	conns      []*conn     // every open connection, for idle checks
	halfClosed []halfClose // FINs to pass on at the end of the batch
	dialing    []*conn     // connections waiting for their backend's answer
	nextCheck  int64       // earliest connect deadline, idle check or accept retry; 0 = none
	nextIdle   int64       // next idle check; 0 = none
	lastWarn   int64       // when localFailure last logged

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

// post runs f on the loop, between two batches of events.
func (l *loop) post(f func(*loop)) {
	l.mu.Lock()
	if l.stopped { // only a connection's Close can come late, and it is closed
		l.mu.Unlock()
		return
	}
	l.inbox = append(l.inbox, f)
	first := len(l.inbox) == 1
	l.mu.Unlock()
	if first {
		one := uint64(1)
		syscall.RawSyscall(syscall.SYS_WRITE, uintptr(l.wakeFD), uintptr(unsafe.Pointer(&one)), 8)
	}
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
		n, err := l.wait(timeout)
		if err != 0 && err != syscall.EINTR {
			panic("proxy: epoll_wait: " + err.Error()) // EBADF/EFAULT/EINVAL: a bug here
		}
		l.now = monotime()
		for i := range n {
			ev := &l.events[i]
			l.dispatch(int(ev.Fd), uint32(ev.Pad), ev.Events)
		}
		timeout = l.checkTimers()
		l.shutdownHalfClosed()
		if len(l.listeners) == 0 && len(l.conns) == 0 && l.exit() {
			return
		}
	}
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
// Serve holds to post a new listener.
func (l *loop) exit() bool {
	e := &l.srv.eng
	e.mu.Lock()
	defer e.mu.Unlock()
	l.mu.Lock()
	l.stopped = len(l.inbox) == 0
	l.mu.Unlock()
	if !l.stopped {
		return false
	}
	for i, x := range e.loops {
		if x == l {
			e.loops = append(e.loops[:i], e.loops[i+1:]...)
			break
		}
	}
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
	if c == nil {
		return
	}
	readable := ev&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0
	hangup := ev&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0
	if fd == c.server && c.dialing >= 0 {
		if ev&(syscall.EPOLLOUT|syscall.EPOLLERR|syscall.EPOLLHUP) == 0 {
			return
		}
		l.dialDone(c, ev)
		if c.closed || c.dialing >= 0 || l.slots[fd].gen != gen {
			return // still dialing, maybe another backend on a reused descriptor
		}
		// Connected: the backend may have spoken already, in this very edge.
	}
	to, from := &c.up, &c.down // the flows fd receives for and sends from
	if fd == c.client {
		to, from = &c.down, &c.up
	}
	if hangup {
		from.hup = true // the edge is consumed: read to the end from now on
	}
	if c.b == nil || c.dialing >= 0 {
		return // the client's bytes wait in the kernel until the backend answers
	}
	if ev&syscall.EPOLLOUT != 0 {
		l.flush(c, to)
	}
	if readable {
		l.pump(c, from)
	}
}

// register adds fd to the epoll set, edge-triggered, for both directions.
func (l *loop) register(fd int, c *conn) syscall.Errno {
	for fd >= len(l.slots) {
		l.slots = append(l.slots, make([]slot, max(len(l.slots), 64))...)
	}
	l.gen++
	l.slots[fd] = slot{gen: l.gen, c: c}
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | epollET,
		Fd:     int32(fd),
		Pad:    int32(l.gen),
	}
	return epollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev)
}

// closeFD closes a socket of a connection; closing takes it out of the
// epoll set.
func (l *loop) closeFD(fd int) {
	l.slots[fd] = slot{}
	syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0)
}

// ---------------------------------------------------------------- accept

func (l *loop) addListener(ln *listener) {
	l.listeners = append(l.listeners, ln)
	l.watchListener(ln)
}

func (l *loop) removeListener(ln *listener) {
	l.listeners = remove(l.listeners, ln)
	if l.isPaused(ln) {
		l.paused = remove(l.paused, ln)
	} else {
		ev := syscall.EpollEvent{}
		epollCtl(l.epfd, syscall.EPOLL_CTL_DEL, ln.fd, &ev)
	}
	l.slots[ln.fd] = slot{}
}

// watchListener adds ln level-triggered, so a backlog left for the next
// batch is reported again, and exclusive, so one new client wakes one loop.
func (l *loop) watchListener(ln *listener) {
	for ln.fd >= len(l.slots) {
		l.slots = append(l.slots, make([]slot, max(len(l.slots), 64))...)
	}
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

const (
	epollExclusive = 1 << 28 // EPOLLEXCLUSIVE
	epollET        = 1 << 31 // EPOLLET; the syscall package's constant is negative
)

// pause stops watching ln until resumeAccepts (a slot freed) or retryAt
// (descriptors may be free again).
func (l *loop) pause(ln *listener) {
	if l.isPaused(ln) {
		return
	}
	ev := syscall.EpollEvent{}
	epollCtl(l.epfd, syscall.EPOLL_CTL_DEL, ln.fd, &ev)
	l.paused = append(l.paused, ln)
}

func (l *loop) isPaused(ln *listener) bool {
	for _, p := range l.paused {
		if p == ln {
			return true
		}
	}
	return false
}

func (l *loop) resumeAccepts() {
	paused := l.paused
	l.paused = nil
	l.retryAt = 0
	for _, ln := range paused {
		l.watchListener(ln)
	}
}

// acceptBatch bounds the accepts per event, so that one loop does not take
// a whole burst while the others idle.
const acceptBatch = 16

func (l *loop) accept(ln *listener) {
	for range acceptBatch {
		if !l.srv.gate.tryAcquire() {
			l.pause(ln) // clients wait in the backlog; a freed slot resumes
			return
		}
		r, _, e := syscall.RawSyscall6(syscall.SYS_ACCEPT4, uintptr(ln.fd), 0, 0, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0, 0)
		switch e {
		case 0:
		case syscall.EAGAIN:
			l.srv.gate.release()
			return
		case syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM:
			// Out of descriptors or memory: wait, do not spin.
			l.srv.gate.release()
			l.warnLocal("accept failed, retrying in "+acceptRetry.String(), e)
			l.pause(ln)
			l.retryAt = l.now + int64(acceptRetry)
			l.scheduleCheck(l.retryAt)
			return
		default: // the client is gone (ECONNABORTED, a network error): next
			l.srv.gate.release()
			continue
		}
		l.srv.accepted.Add(1)
		l.srv.conns.Add(1)
		l.open(int(r))
	}
}

// acceptRetry is how long a listener rests after accept ran out of
// descriptors or memory.
const acceptRetry = 100 * time.Millisecond

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

// checkTimers fails the dials past their deadline, closes the connections
// idle for longer than the idle timeout, retries paused listeners, and
// returns epoll_wait's timeout in ms until the next check (-1: none).
func (l *loop) checkTimers() int {
	idle := l.idleTimeout()
	if idle > 0 && len(l.conns) > 0 && l.nextIdle == 0 {
		l.nextIdle = l.now + idleCheckEvery(idle)
		l.scheduleCheck(l.nextIdle)
	}
	if l.nextCheck == 0 {
		return -1
	}
	if l.now < l.nextCheck {
		return waitMillis(l.nextCheck - l.now)
	}
	l.nextCheck = 0
	for i := 0; i < len(l.dialing); {
		c := l.dialing[i]
		if l.now < c.deadline {
			l.scheduleCheck(c.deadline)
			i++
			continue
		}
		l.stopDialing(c) // moves the last one to i
		l.dialFailed(c, "connect timeout after "+c.set.ConnectTimeout.String())
		c.tries--
		l.dial(c)
	}
	if l.retryAt != 0 {
		if l.now >= l.retryAt {
			l.resumeAccepts()
		} else {
			l.scheduleCheck(l.retryAt)
		}
	}
	if l.nextIdle != 0 && l.now >= l.nextIdle {
		l.nextIdle = 0
		for i := 0; idle > 0 && i < len(l.conns); {
			c := l.conns[i]
			if c.b != nil && c.dialing < 0 && l.now-c.last >= int64(idle) {
				l.close(c) // moves the last one to i
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
	if l.nextCheck == 0 {
		return -1
	}
	return waitMillis(l.nextCheck - l.now)
}

// waitMillis is epoll_wait's timeout for a wait of ns, rounded up and at
// most a minute (an int32 of milliseconds holds only 24 days).
func waitMillis(ns int64) int {
	return int(min((ns+999_999)/1_000_000, 60_000))
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

func setNoDelay(fd int) {
	one := int32(1)
	syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY, uintptr(unsafe.Pointer(&one)), 4, 0)
}

// connect starts a non-blocking connect to d. It returns the socket and 0
// (connected), EINPROGRESS (wait for writable) or the backend's refusal;
// or -1 and a local failure (no descriptor, no memory, no local port).
func connect(d *dest) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall(syscall.SYS_SOCKET, uintptr(d.family), syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if e != 0 {
		return -1, e
	}
	fd := int(r)
	setNoDelay(fd)
	_, _, e = syscall.RawSyscall(syscall.SYS_CONNECT, uintptr(fd), uintptr(d.addr), uintptr(d.len))
	switch e {
	case 0, syscall.EINPROGRESS:
		return fd, e
	case syscall.EADDRNOTAVAIL, syscall.EAGAIN, syscall.ENOBUFS, syscall.ENOMEM:
		syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0)
		return -1, e
	}
	return fd, e // refused or unreachable: the caller closes fd
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
