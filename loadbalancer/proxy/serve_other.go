//go:build !linux

package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
)

// Off Linux each connection is a goroutine pair running io.Copy. The
// latency strategies see connect times only (no response-time sample) and
// the idle timeout is not enforced.

// route is what a new connection is routed by.
type route struct{ t *Table }

func newRoute(t *Table) *route { return &route{t: t} }

// engine wakes the accept loops held back at the connection cap.
type engine struct{ freed chan struct{} }

func (e *engine) init() { e.freed = make(chan struct{}, 1) }

func (e *engine) slotFreed() {
	select {
	case e.freed <- struct{}{}:
	default:
	}
}

// idleTimeoutChanged: the idle timeout is not enforced off Linux.
func (e *engine) idleTimeoutChanged() {}

// closeAll: CloseAll's backends list every connection here.
func (e *engine) closeAll() {}

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
		for !s.gate.tryAcquire() {
			select {
			case <-s.eng.freed:
			case <-ctx.Done():
				return nil
			}
		}
		c, err := ln.AcceptTCP()
		if err != nil {
			s.gate.release()
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
	if s.closing.Load() { // shutdown's CloseAll ran between our dial and Attach
		l.Close()
		return
	}
	in, out := l.run()
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
type link struct{ client, server *net.TCPConn }

// Close aborts both sides; the copies then end with an error.
func (l *link) Close() error {
	l.client.Close()
	l.server.Close()
	return nil
}

// run copies both ways, half-closing on EOF, until both directions are done.
func (l *link) run() (in, out int64) {
	done := make(chan int64, 1)
	go func() { done <- l.copy(l.server, l.client) }()
	out = l.copy(l.client, l.server)
	in = <-done
	l.Close()
	return in, out
}

func (l *link) copy(dst, src *net.TCPConn) int64 {
	n, err := io.Copy(dst, src)
	if err != nil {
		l.Close()
	} else {
		dst.CloseWrite()
	}
	return n
}
