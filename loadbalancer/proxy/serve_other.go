//go:build (unix && !linux) || lemonade_goroutines

package proxy

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/accesslog"
	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
)

// The goroutine engine, used off Linux (and on Linux with the build tag
// lemonade_goroutines, so that the proxy's tests run on it too). Each
// connection is two goroutines, one per direction (a flow), each reading its
// source and writing what it read to the other side with blocking calls.
// What the event loops learn from epoll, these learn from their calls'
// results, from deadlines and from the sockets' pending errors:
//
//   - a read's EOF is the source's FIN: passed on as a half-close, and the
//     other flow goes on; a read's error is the source's reset;
//   - a write's error is the destination's reset: the flow from that side
//     still delivers what the side sent before it;
//   - once a side has reset and what it sent before is delivered, the other
//     side is reset too (SO_LINGER 0), never closed cleanly; abortLinger
//     bounds the delivery;
//   - a side whose flow is not reading it is watched for a reset: after its
//     FIN by waiting for its socket's events, and while its flow waits for a
//     slow receiver by a look at its pending error every probeEvery;
//   - every read and write notes the time of the last bytes (either way):
//     the idle timeout is a deadline moved on when it passes while bytes
//     moved, read from the settings each time, so a change reaches open
//     connections (settingsChanged makes each look at once).
//
// It needs a Unix socket API (SO_ERROR, SO_OOBINLINE, dup): the proxy
// builds on Linux and the other Unix systems, not on Windows.

const (
	// chunkSize is the most one read moves; each flow holds one such buffer.
	chunkSize = 32 << 10
	// probeEvery is how often a write that waits for a slow receiver stops
	// to look whether its source has reset meanwhile.
	probeEvery = 100 * time.Millisecond
	// maxDialPause bounds the pause between two dials of a client waiting
	// for a descriptor (this host ran out); the first is 10ms.
	maxDialPause = time.Second
)

// the two sides of a connection, indexes of goConn.done and goConn.gone
const (
	atClient = 0
	atServer = 1
)

// goEngine accepts with one goroutine per listener, runs each connection as
// a goroutine pair and knows every connection, for closeAll, closeBackend
// and settingsChanged.
type goEngine struct {
	s     *Server
	freed chan struct{} // a slot freed: wakes one accept loop held at the cap
	mu    sync.Mutex
	conns map[*goConn]struct{}

	// Out of descriptors: clients wait for one (and accepts pause meanwhile,
	// see serve); a connection's end wakes them.
	fdWaiters atomic.Int64  // clients waiting for a descriptor
	fdFreed   chan struct{} // closed (and replaced, under mu) when descriptors may have freed
	warned    atomic.Int64  // sinceStart() of the last local-failure warning
}

func newEngine(s *Server) engine {
	return &goEngine{s: s, freed: make(chan struct{}, 1), conns: map[*goConn]struct{}{}, fdFreed: make(chan struct{})}
}

// fdFreedChan returns the channel closed at the next fdsFreed.
func (e *goEngine) fdFreedChan() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.fdFreed
}

// fdsFreed wakes whoever waits for a descriptor: the clients waiting, and
// the accept loops waiting for them.
func (e *goEngine) fdsFreed() {
	e.mu.Lock()
	defer e.mu.Unlock()
	close(e.fdFreed)
	e.fdFreed = make(chan struct{})
}

func (e *goEngine) slotFreed() {
	select {
	case e.freed <- struct{}{}:
	default:
	}
}

func (e *goEngine) settingsChanged() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for c := range e.conns {
		c.poke()
	}
}

func (e *goEngine) closeBackend(b *backend.Backend) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for c := range e.conns {
		c.mu.Lock()
		if c.b == b && !c.over {
			c.endFor(accesslog.DrainTimeout)
			c.end(true)
			n++
		}
		c.mu.Unlock()
	}
	return n
}

func (e *goEngine) closeAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for c := range e.conns {
		c.mu.Lock()
		if !c.over {
			c.endFor(accesslog.Shutdown)
			c.end(true)
		}
		c.mu.Unlock()
	}
}

func (e *goEngine) serve(ctx context.Context, ln *net.TCPListener) error {
	s := e.s
	if rc, err := ln.SyscallConn(); err == nil {
		rc.Control(inlineUrgent) // for the sockets it accepts (not on Linux's MPTCP listeners)
	}
	listener := ln.Addr().(*net.TCPAddr).AddrPort()
	stop := context.AfterFunc(ctx, func() { ln.SetDeadline(time.Now().Add(backlogGrace)) })
	defer stop()
	defer ln.Close()
	var backoff time.Duration
	// Each accepted client is handed over once it has its backend socket
	// (or its dial's outcome): a burst of accepts does not take the
	// descriptors its dials need. While clients wait for a descriptor, no
	// one new is accepted: the rest wait in the backlog.
	dialing := make(chan struct{}, 1)
	for {
		for ctx.Err() == nil { // (on ctx's end, the backlog's grace)
			freed := e.fdFreedChan()
			if e.fdWaiters.Load() == 0 {
				break
			}
			select {
			case <-freed:
			case <-ctx.Done():
			}
		}
		// The slot is taken after the accept (a listener waiting for a
		// client must not hold one) and before the next: at the cap this
		// loop holds one accepted client and the rest wait in the backlog.
		c, err := ln.AcceptTCP()
		if err == nil {
			c.SetKeepAliveConfig(keepAlive) // a client host that vanished ends its connection
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil // the grace deadline passed, or ln was closed
			}
			// Out of file descriptors and the like: wait, do not spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", "address", ln.Addr().String(), "error", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		backoff = 0
		for !s.gate.tryAcquire() {
			select {
			case <-e.freed:
			case <-ctx.Done():
				c.Close()
				return nil
			}
		}
		if lim := s.gate.limit.Load(); lim > 0 && s.gate.active.Load() < lim {
			e.slotFreed() // room for another accept loop held back too
		}
		s.accepted.Add(1)
		s.conns.Add(1)
		go e.handle(c, listener, dialing)
		select {
		case <-dialing:
		case <-ctx.Done():
		}
	}
}

// keepAlive is keepAliveIdle for this engine's sockets (Go's settings; the
// kernel's interval and count).
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: keepAliveIdle, Interval: -1, Count: -1}
