//go:build !linux || lemonade_goroutines

package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
)

// Off Linux each connection is a goroutine pair running io.Copy; the idle
// timeout is not enforced. The build tag lemonade_goroutines selects this
// engine on Linux too, so that `make test` runs the proxy's tests on it.

// route is what a new connection is routed by.
type route struct{ t *Table }

func newRoute(t *Table) *route { return &route{t: t} }

// engine wakes the accept loops held back at the connection cap and knows
// every open connection, for CloseAll.
type engine struct {
	freed chan struct{}
	mu    sync.Mutex
	links map[*link]struct{}
}

func (e *engine) init() {
	e.freed = make(chan struct{}, 1)
	e.links = map[*link]struct{}{}
}

func (e *engine) slotFreed() {
	select {
	case e.freed <- struct{}{}:
	default:
	}
}

// idleTimeoutChanged: the idle timeout is not enforced off Linux.
func (e *engine) idleTimeoutChanged() {}

func (e *engine) closeAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for l := range e.links {
		l.Close()
	}
}

// Serve accepts connections on ln until ctx ends, then closes ln and
// returns; connections already accepted go on (see Wait, CloseAll). When ctx
// ends, the connections already waiting in the backlog are still accepted
// and proxied.
func (s *Server) Serve(ctx context.Context, ln *net.TCPListener) error {
	stop := context.AfterFunc(ctx, func() { ln.SetDeadline(time.Now().Add(backlogGrace)) })
	defer stop()
	defer ln.Close()
	var backoff time.Duration
	for {
		// The slot is taken after the accept (a listener waiting for a
		// client must not hold one) and before the next: at the cap this
		// loop holds one accepted client and the rest wait in the backlog.
		c, err := ln.AcceptTCP()
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
			case <-s.eng.freed:
			case <-ctx.Done():
				c.Close()
				return nil
			}
		}
		if lim := s.gate.limit.Load(); lim > 0 && s.gate.active.Load() < lim {
			s.eng.slotFreed() // room for another accept loop held back too
		}
		s.accepted.Add(1)
		s.conns.Add(1)
		go s.handle(c)
	}
}

func (s *Server) handle(client *net.TCPConn) {
	defer s.conns.Done()
	defer s.gate.release()
	b, server := s.connect(s.route.Load().t, s.settings.Load())
	if server == nil {
		s.noBackend.Add(1)
		client.Close()
		return
	}
	defer b.Release()
	l := &link{client: client, server: server}
	b.Attach(l)
	defer b.Detach(l)
	s.eng.mu.Lock()
	s.eng.links[l] = struct{}{}
	s.eng.mu.Unlock()
	defer func() {
		s.eng.mu.Lock()
		delete(s.eng.links, l)
		s.eng.mu.Unlock()
	}()
	if s.closing.Load() { // shutdown's CloseAll ran between our dial and here
		l.Close()
		return
	}
	in, out := l.run(b)
	b.AddBytes(in, out)
}

// connect picks and dials a backend, trying up to set.Retries others after a
// failed dial, which marks the backend down at once (passive health).
func (s *Server) connect(t *Table, set *Settings) (*backend.Backend, *net.TCPConn) {
	if t == nil {
		return nil, nil
	}
	d := net.Dialer{Timeout: set.ConnectTimeout, KeepAlive: -1}
	for range set.Retries + 1 {
		b := t.Strategy.Pick(t.Backends)
		if b == nil {
			return nil, nil
		}
		b.Acquire()
		start := time.Now()
		c, err := d.Dial("tcp", b.Address)
		if err != nil {
			b.Release()
			b.DialFailed()
			b.Transition(s.log, false, "dial failed: "+err.Error())
			continue
		}
		b.Connected(time.Since(start))
		return b, c.(*net.TCPConn)
	}
	return nil, nil
}

// link is one proxied connection.
type link struct {
	client, server *net.TCPConn
	firstIn        atomic.Int64 // unix ns of the client's first bytes
}

// Close aborts both sides; the copies then end with an error.
func (l *link) Close() error {
	l.client.Close()
	l.server.Close()
	return nil
}

// run copies both ways, half-closing on EOF, until both directions are done.
// The first bytes each way give the response-time sample: from the client's
// first bytes to the backend's, the client's think time not counted.
func (l *link) run(b *backend.Backend) (in, out int64) {
	done := make(chan int64, 1)
	go func() {
		done <- l.copy(l.server, l.client, func() { l.firstIn.Store(time.Now().UnixNano()) })
	}()
	out = l.copy(l.client, l.server, func() {
		if t0 := l.firstIn.Load(); t0 != 0 { // 0: the backend spoke first
			b.ObserveLatency(time.Duration(time.Now().UnixNano() - t0))
		}
	})
	in = <-done
	l.Close()
	return in, out
}

// firstChunks are the buffers of the first reads, shared: a connection
// holds one only until its first bytes are passed on.
var firstChunks = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// copy moves src to dst: the first chunk by hand, to run first when it
// arrives, then io.Copy.
func (l *link) copy(dst, src *net.TCPConn, first func()) int64 {
	buf := firstChunks.Get().(*[]byte)
	n, err := src.Read(*buf)
	if n > 0 {
		first()
		_, werr := dst.Write((*buf)[:n])
		firstChunks.Put(buf)
		if werr != nil {
			l.Close()
			return 0
		}
	} else {
		firstChunks.Put(buf)
	}
	moved := int64(n)
	if err == nil {
		var m int64
		m, err = io.Copy(dst, src)
		moved += m
	} else if err == io.EOF {
		err = nil
	}
	if err != nil {
		l.Close()
	} else {
		dst.CloseWrite()
	}
	return moved
}
