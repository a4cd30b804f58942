// Package proxy is the balancer's hot path: accept a TCP connection, pick a
// backend with the current strategy, dial it (trying another on failure) and
// copy bytes both ways until both sides are done.
//
// On Linux a few event loops do all of it (loop_linux.go): each owns an epoll
// set, accepts, dials without blocking and moves bytes with recv/send through
// one buffer per loop, so a connection costs no goroutine and, while idle, no
// buffer. Elsewhere each connection is a goroutine pair running io.Copy
// (serve_other.go).
package proxy

import (
	"context"
	"log/slog"
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
	// EventLoops is how many event loops move the bytes (Linux); 0 = one per
	// two CPUs. The loops are started with the first listener and kept.
	EventLoops int
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
	route    atomic.Pointer[route]
	eng      engine
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
	srv := &Server{log: log}
	srv.eng.init()
	srv.gate.onFree = srv.eng.slotFreed
	srv.SetTable(t)
	srv.SetSettings(s)
	return srv
}

// SetTable routes new connections by t; open connections are not touched.
func (s *Server) SetTable(t *Table) { s.route.Store(newRoute(t)) }

// SetSettings applies s to the next connection, and the connection cap and
// the idle timeout to the open ones at once.
func (s *Server) SetSettings(set Settings) {
	if set.ConnectTimeout <= 0 {
		set.ConnectTimeout = defaultConnectTimeout
	}
	old := s.settings.Swap(&set)
	s.gate.setLimit(int64(set.MaxConnections))
	if old != nil && old.IdleTimeout != set.IdleTimeout {
		s.eng.idleTimeoutChanged()
	}
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
	s.eng.closeAll() // and any connection a backend no longer lists
}

// gate is the max_connections cap: a connection takes a slot before it is
// accepted, so at the cap clients wait in the kernel backlog rather than
// being accepted and dropped.
type gate struct {
	active   atomic.Int64
	limit    atomic.Int64 // 0 = no cap
	atCap    atomic.Int64 // ns spent with an accept held back by the cap
	capSince atomic.Int64 // unix ns since an accept is held back; 0 = none is
	// onFree runs when a slot frees or the cap is raised while an accept is
	// held back, so that the engine accepts again.
	onFree func()
}

func (g *gate) setLimit(n int64) {
	g.limit.Store(n)
	if g.capSince.Load() != 0 {
		g.onFree()
	}
}

// tryAcquire takes a slot; at the cap it records that an accept is held
// back and returns false.
func (g *gate) tryAcquire() bool {
	for {
		n, lim := g.active.Load(), g.limit.Load()
		if lim > 0 && n >= lim {
			g.capSince.CompareAndSwap(0, time.Now().UnixNano())
			// A release or a raised cap between the check and the mark saw
			// no one held back and woke no one: look again after marking.
			if g.active.Load() < g.limit.Load() {
				continue
			}
			return false
		}
		if g.active.CompareAndSwap(n, n+1) {
			if since := g.capSince.Swap(0); since != 0 {
				g.atCap.Add(time.Now().UnixNano() - since)
			}
			return true
		}
	}
}

// release frees a slot: the connection ended, or none was accepted.
func (g *gate) release() {
	g.active.Add(-1)
	if g.capSince.Load() != 0 {
		g.onFree()
	}
}
