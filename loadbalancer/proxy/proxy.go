// Package proxy is the balancer's hot path: accept a TCP connection, pick a
// backend with the current strategy, dial it (trying another on failure) and
// copy bytes both ways with splice(2) until both sides are done.
package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
	"github.com/lemonade-lb/lemonade/loadbalancer/strategy"
)

// Table is what a new connection is routed by: the backends and the strategy
// prepared for them. It is immutable; a reload publishes a new one.
type Table struct {
	Backends []*backend.Backend
	Strategy strategy.Strategy
}

// Settings are the per-connection knobs. The zero value means: no connection
// limit, a 2s connect timeout, no retries, no idle timeout.
type Settings struct {
	// MaxConnections caps open client connections; at the cap the server
	// stops accepting and clients wait in the kernel backlog. 0 = no cap.
	MaxConnections int
	// ConnectTimeout bounds each dial to a backend. 0 = 2s.
	ConnectTimeout time.Duration
	// Retries is how many more backends are tried after a failed dial.
	Retries int
	// IdleTimeout closes a connection with no bytes either way for this long.
	// 0 = never.
	IdleTimeout time.Duration
}

const defaultConnectTimeout = 2 * time.Second

// Stats are the server's counters.
type Stats struct {
	Active    int64         `json:"active_connections"`
	Accepted  uint64        `json:"accepted_connections"`
	NoBackend uint64        `json:"rejected_no_backend"`
	AtCap     time.Duration `json:"time_at_max_connections_ns"`
}

// Server proxies the connections of any number of listeners to the backends
// of its current Table. Create it with New.
type Server struct {
	log      *slog.Logger
	table    atomic.Pointer[Table]
	settings atomic.Pointer[Settings]
	gate     gate

	accepted  atomic.Uint64
	noBackend atomic.Uint64
	closing   atomic.Bool
	conns     sync.WaitGroup
}

// New returns a server routing by t with settings s; log receives health
// transitions seen by failed dials (never per-connection lines).
func New(log *slog.Logger, t *Table, s Settings) *Server {
	srv := &Server{log: log, gate: gate{freed: make(chan struct{}, 1)}}
	srv.SetTable(t)
	srv.SetSettings(s)
	return srv
}

// SetTable routes new connections by t; open connections are not touched.
func (s *Server) SetTable(t *Table) { s.table.Store(t) }

// SetSettings applies s to the next connection (and the connection cap at once).
func (s *Server) SetSettings(set Settings) {
	if set.ConnectTimeout <= 0 {
		set.ConnectTimeout = defaultConnectTimeout
	}
	s.settings.Store(&set)
	s.gate.setLimit(int64(set.MaxConnections))
}

// Stats reads the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Active:    s.gate.active.Load(),
		Accepted:  s.accepted.Load(),
		NoBackend: s.noBackend.Load(),
		AtCap:     time.Duration(s.gate.atCap.Load()),
	}
}

// backlogGrace is how long a stopping listener keeps accepting what is
// already in its kernel backlog: closing it at once would reset connections
// that clients see as established.
const backlogGrace = 50 * time.Millisecond

// Serve accepts connections on ln until ctx ends or ln is closed, then closes
// ln and returns; connections already accepted go on (see Wait, CloseAll).
// When ctx ends, the connections already waiting in the backlog are still
// accepted and proxied.
func (s *Server) Serve(ctx context.Context, ln *net.TCPListener) error {
	stop := context.AfterFunc(ctx, func() { ln.SetDeadline(time.Now().Add(backlogGrace)) })
	defer stop()
	defer ln.Close()
	var backoff time.Duration
	for {
		if !s.gate.acquire(ctx) {
			return nil
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

// Wait blocks until every accepted connection has ended or ctx ends; it
// reports whether all ended.
func (s *Server) Wait(ctx context.Context) bool {
	done := make(chan struct{})
	go func() { s.conns.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// CloseAll refuses every connection not yet proxied and closes the open ones
// of backends; used at the end of the shutdown drain.
func (s *Server) CloseAll(backends []*backend.Backend) {
	s.closing.Store(true)
	for _, b := range backends {
		b.CloseAll()
	}
}

func (s *Server) handle(client *net.TCPConn) {
	defer s.conns.Done()
	defer s.gate.release()
	set := s.settings.Load()
	b, server := s.connect(s.table.Load(), set)
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
	in, out := l.run(b, set.IdleTimeout)
	b.AddBytes(in, out)
}

// connect picks and dials a backend, trying up to set.Retries others after a
// failed dial. A failed dial marks the backend down at once (passive health);
// the active checks bring it back.
func (s *Server) connect(t *Table, set *Settings) (*backend.Backend, *net.TCPConn) {
	if t == nil {
		return nil, nil
	}
	// KeepAlive -1: no TCP keep-alive probes (four setsockopt calls per
	// connection); idle connections are the idle timeout's business.
	d := net.Dialer{Timeout: set.ConnectTimeout, KeepAlive: -1}
	for range set.Retries + 1 {
		b := t.Strategy.Pick(t.Backends)
		if b == nil {
			return nil, nil
		}
		b.Acquire()
		start := time.Now()
		c, err := dial(&d, b)
		if err != nil {
			b.Release()
			b.DialFailed()
			b.Transition(s.log, false, "dial failed: "+err.Error())
			continue
		}
		b.Connected(time.Since(start))
		return b, c
	}
	return nil, nil
}

// dial connects to b. No local address is given: binding one first would make
// every backend connection take a port that is free for all destinations,
// and a host short of ports would then fail every dial.
func dial(d *net.Dialer, b *backend.Backend) (*net.TCPConn, error) {
	c, err := d.Dial("tcp", b.Address)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// link is one proxied connection: the client side, the backend side, and the
// times that the response-time sample and the idle timeout need.
type link struct {
	client, server *net.TCPConn
	firstIn        atomic.Int64 // unix ns when the client's first bytes arrived
	lastActive     atomic.Int64 // unix ns; kept only with an idle timeout
}

// Close aborts both sides; the copies then end with an error.
func (l *link) Close() error {
	l.client.Close()
	l.server.Close()
	return nil
}

func (l *link) touch() { l.lastActive.Store(time.Now().UnixNano()) }

func (l *link) activeWithin(d time.Duration) bool {
	return time.Since(time.Unix(0, l.lastActive.Load())) < d
}

// run copies both ways until both directions are done and returns the bytes
// moved client→backend and backend→client.
func (l *link) run(b *backend.Backend, idle time.Duration) (in, out int64) {
	if idle > 0 {
		l.touch()
	}
	done := make(chan int64, 1)
	go func() { done <- l.upstream(idle) }()
	out = l.downstream(b, idle)
	in = <-done
	l.Close()
	return in, out
}

// upstream copies client → backend. On the client's EOF it half-closes the
// backend side and lets the other direction finish; on an error it aborts both.
func (l *link) upstream(idle time.Duration) int64 {
	n, err := copyConn(l.server, l.client, l, idle, func() { l.firstIn.Store(time.Now().UnixNano()) })
	if err != nil {
		l.Close()
	} else {
		l.server.CloseWrite()
	}
	return n
}

// downstream copies backend → client, taking the response-time sample when
// the backend's first bytes arrive: the time since the client's first bytes
// (TTFB), not counting the client's think time before it.
func (l *link) downstream(b *backend.Backend, idle time.Duration) int64 {
	n, err := copyConn(l.client, l.server, l, idle, func() {
		if t0 := l.firstIn.Load(); t0 != 0 { // 0: the backend spoke first
			b.ObserveLatency(time.Duration(time.Now().UnixNano() - t0))
		}
	})
	if err != nil {
		l.Close()
	} else {
		l.client.CloseWrite()
	}
	return n
}

// gate is the max_connections cap: the accept loops take a slot before
// accepting, so at the cap clients wait in the kernel backlog rather than
// being accepted and dropped.
type gate struct {
	active atomic.Int64
	limit  atomic.Int64 // 0 = no cap
	atCap  atomic.Int64 // ns spent waiting at the cap
	freed  chan struct{}
}

func (g *gate) setLimit(n int64) {
	g.limit.Store(n)
	g.signal() // a raised cap frees waiters at once
}

func (g *gate) signal() {
	select {
	case g.freed <- struct{}{}:
	default:
	}
}

func (g *gate) acquire(ctx context.Context) bool {
	for {
		n, lim := g.active.Load(), g.limit.Load()
		if lim <= 0 || n < lim {
			if g.active.CompareAndSwap(n, n+1) {
				if lim > 0 && n+1 < lim {
					g.signal() // room for another waiting accept loop too
				}
				return true
			}
			continue
		}
		start := time.Now()
		select {
		case <-g.freed:
			g.atCap.Add(int64(time.Since(start)))
		case <-ctx.Done():
			g.atCap.Add(int64(time.Since(start)))
			return false
		}
	}
}

func (g *gate) release() {
	g.active.Add(-1)
	g.signal()
}
