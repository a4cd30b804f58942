// Package proxy is the balancer's hot path: accept a TCP connection, pick a
// backend with the current strategy, dial it (trying another on failure) and
// copy bytes both ways until both sides are done.
//
// The bytes are moved by an engine, which owns its connections. On Linux a
// few event loops do all of it (loop_linux.go, conn_linux.go): each owns an
// epoll set, accepts, dials without blocking and moves bytes with recv/send
// through one buffer per loop, so a connection costs no goroutine and, while
// idle, no buffer. Elsewhere each connection is a goroutine pair
// (serve_other.go). Both keep the same promise, tested by one suite
// (contract_test.go): every byte sent before a clean close arrives, a FIN is
// passed on as a half-close, an abort (RST) is passed on as an abort after
// the bytes sent before it, and every error ends the connection and frees
// its slot.
package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/accesslog"
	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
	"github.com/lemonade-lb/lemonade/loadbalancer/strategy"
)

// Table is what a new connection is routed by: the backends and the strategy
// prepared for them. It is immutable; a reload publishes a new one.
type Table struct {
	Backends []*backend.Backend // the pool, in config order
	Strategy strategy.Strategy  // picks from Backends; prepared for them
}

// route is what a new connection is routed by.
type route struct{ t *Table }

// newRoute prepares t: the host names of its backends are looked up at once
// (concurrently, so a reload waits for the slowest, not for their sum), so
// that the first clients already have addresses. A failed lookup is not
// kept: the backend looks again when it is dialled.
func newRoute(t *Table) *route {
	if t != nil {
		var wg sync.WaitGroup
		for _, b := range t.Backends {
			wg.Go(func() { b.Resolve(context.Background()) })
		}
		wg.Wait()
	}
	return &route{t: t}
}

// Settings are the per-connection knobs. The zero value means: no connection
// limit, a 2s connect timeout, no retries, no idle timeout, and a failed dial
// never marks a backend down.
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
	// Passive is when failed dials mark a backend down (passive health).
	Passive backend.Passive
}

const defaultConnectTimeout = 2 * time.Second

// Stats are the server's counters.
type Stats struct {
	Active    int64         `json:"active_connections"`         // client connections open now
	Accepted  uint64        `json:"accepted_connections"`       // client connections accepted in all
	NoBackend uint64        `json:"rejected_no_backend"`        // closed because no backend was eligible or every dial failed
	AtCap     time.Duration `json:"time_at_max_connections_ns"` // spent not accepting, at proxy.max_connections
	// Aborts counts connections ended by a reset from either side (passed on
	// as a reset to the other).
	Aborts uint64 `json:"aborted_connections"`
	// WaitedForDescriptors counts clients kept waiting because this host had
	// no descriptor for their backend connection (served once one freed).
	WaitedForDescriptors uint64 `json:"waited_for_descriptors"`
	// LogsDropped counts log lines of the data path dropped because the log
	// sink was slower than they came.
	LogsDropped uint64 `json:"logs_dropped"`
	// Retries counts dials that followed a failed dial of the same client
	// connection: to the backend's next address, or to another backend.
	Retries uint64 `json:"retries"`
	// MaxConnections is the cap in force; 0 = none.
	MaxConnections int64 `json:"max_connections"`
	// AcceptHeldBack is true while an accept is held back at the cap, until
	// a slot frees: clients wait in the kernel backlog (how many is not
	// known cheaply; an event loop that filled the cap in one burst asks
	// for one more slot before it knows whether another client is there).
	AcceptHeldBack bool `json:"accept_held_back"`
}

// engine moves the bytes. It owns the connections it accepts: only it
// touches their sockets; everyone else asks it (one implementation per
// platform: loop_linux.go, serve_other.go; one test suite).
type engine interface {
	// serve accepts on ln until ctx ends, then for backlogGrace more, closes
	// ln and returns; accepted connections go on.
	serve(ctx context.Context, ln *net.TCPListener) error
	// slotFreed: a max_connections slot freed (or the cap rose) while an
	// accept was held back; wake one acceptor, not all.
	slotFreed()
	// settingsChanged: settings that reach open connections (the idle
	// timeout) changed.
	settingsChanged()
	// closeBackend aborts every open connection to b and returns how many.
	closeBackend(b *backend.Backend) int
	// closeAll aborts every open connection.
	closeAll()
}

// Server proxies the connections of any number of listeners to the backends
// of its current Table. Create it with New.
type Server struct {
	log      *slog.Logger // for the data path: never blocks (see asyncLog)
	route    atomic.Pointer[route]
	eng      engine
	settings atomic.Pointer[Settings]
	gate     gate
	idle     idleWatch

	accepted    atomic.Uint64
	noBackend   atomic.Uint64
	aborts      atomic.Uint64
	waitedFDs   atomic.Uint64
	logsDropped atomic.Uint64
	retries     atomic.Uint64 // dials after a failed one (Stats.Retries)
	retryStart  atomic.Uint64 // rotates the retries' fallback scan
	closing     atomic.Bool
	conns       sync.WaitGroup
	// accessLog gets a line for each connection that ends while it is set.
	accessLog atomic.Pointer[accesslog.Log]
}

// New returns a server routing by t with settings s; log receives health
// transitions seen by failed dials and local failures (never per-connection
// lines), written off the data path.
func New(log *slog.Logger, t *Table, s Settings) *Server {
	srv := &Server{}
	srv.log = asyncLog(log, &srv.logsDropped)
	srv.eng = newEngine(srv)
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
	if old != nil && (old.IdleTimeout != set.IdleTimeout || old.MaxConnections != set.MaxConnections) {
		s.eng.settingsChanged()
	}
}

// SetAccessLog sends a line to l for every connection that ends from now
// on; nil stops it. The client's address is known for the connections
// accepted while a log is set.
func (s *Server) SetAccessLog(l *accesslog.Log) { s.accessLog.Store(l) }

// Stats reads the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Active:               s.gate.active.Load(),
		Accepted:             s.accepted.Load(),
		NoBackend:            s.noBackend.Load(),
		AtCap:                time.Duration(s.gate.atCap.Load()),
		Aborts:               s.aborts.Load(),
		WaitedForDescriptors: s.waitedFDs.Load(),
		LogsDropped:          s.logsDropped.Load(),
		Retries:              s.retries.Load(),
		MaxConnections:       s.gate.limit.Load(),
		AcceptHeldBack:       s.gate.heldBack(),
	}
}

// The bounds both engines keep.
const (
	// abortLinger bounds how long a reset side's last bytes may take to
	// reach the other side before that side is reset regardless.
	abortLinger = 2 * time.Second
	// fdWaitTimeout bounds how long an accepted client waits for a
	// descriptor for its backend connection when this host has none.
	fdWaitTimeout = 30 * time.Second
	// keepAliveIdle is when TCP keep-alive probes start on a quiet
	// connection (both sides): a peer whose host vanished without a reset
	// (a crash, a NAT that dropped the flow) then ends its connection after
	// the kernel's probes fail, instead of holding its slot forever. Long,
	// so that it costs nothing on live connections.
	keepAliveIdle = 5 * time.Minute
)

// backlogGrace is how long a stopping listener keeps accepting what is
// already in its kernel backlog: closing it at once would reset connections
// that clients see as established.
const backlogGrace = 50 * time.Millisecond

// Listen opens a listener the way the engines expect: plain TCP, not
// multipath TCP (Go's default on Linux since 1.24: an MPTCP listener refuses
// SO_OOBINLINE, and HAProxy and nginx listen on plain TCP too), with the
// options every accepted socket needs set before the first client arrives
// (TCP_NODELAY, SO_OOBINLINE: accepted sockets inherit them, and urgent
// data that arrives before the accept stays in the stream), and no TCP
// keep-alive probes on accepted connections (as HAProxy and nginx by
// default; it saves syscalls per connection).
func Listen(address string) (*net.TCPListener, error) {
	return listen(address, listenerOptions)
}

// ListenReusePort is Listen with SO_REUSEPORT: another listener of the same
// user may bind the same address beside it, and the kernel spreads new
// connections over the two.
func ListenReusePort(address string) (*net.TCPListener, error) {
	return listen(address, reusePortOptions)
}

func listen(address string, control func(network, address string, c syscall.RawConn) error) (*net.TCPListener, error) {
	lc := net.ListenConfig{KeepAlive: -1, Control: control}
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", address)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", address, err)
	}
	return ln.(*net.TCPListener), nil
}

// Serve accepts connections on ln until ctx ends, then closes ln and
// returns; connections already accepted go on (see Wait, CloseAll). When ctx
// ends, the connections already waiting in the backlog are still accepted
// and proxied for a short grace.
func (s *Server) Serve(ctx context.Context, ln *net.TCPListener) error {
	return s.eng.serve(ctx, ln)
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

// CloseAll refuses every connection not yet proxied and aborts the open
// ones; used at the end of the shutdown drain.
func (s *Server) CloseAll() {
	s.closing.Store(true)
	s.eng.closeAll()
}

// CloseBackend aborts every open connection to b (the end of its drain) and
// returns how many it closed.
func (s *Server) CloseBackend(b *backend.Backend) int { return s.eng.closeBackend(b) }

// Drained returns a channel that is closed once b has no open connection.
func (s *Server) Drained(b *backend.Backend) <-chan struct{} { return s.idle.wait(b) }

// release undoes b.Acquire for a connection that ended or never connected,
// and tells Drained's waiters when it was b's last.
func (s *Server) release(b *backend.Backend) {
	b.Release()
	if s.idle.waiters.Load() > 0 && b.Active() == 0 {
		s.idle.notify(b)
	}
}

// idleWatch closes channels when a backend's last connection ends. The data
// path pays one atomic load while nobody waits.
type idleWatch struct {
	waiters atomic.Int64
	mu      sync.Mutex
	chans   map[*backend.Backend][]chan struct{}
}

func (w *idleWatch) wait(b *backend.Backend) <-chan struct{} {
	ch := make(chan struct{})
	w.mu.Lock()
	if w.chans == nil {
		w.chans = map[*backend.Backend][]chan struct{}{}
	}
	w.chans[b] = append(w.chans[b], ch)
	w.waiters.Add(1)
	w.mu.Unlock()
	// A release between the last check and the registration saw no waiter.
	if b.Active() == 0 {
		w.notify(b)
	}
	return ch
}

func (w *idleWatch) notify(b *backend.Backend) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if b.Active() != 0 {
		return
	}
	for _, ch := range w.chans[b] {
		close(ch)
		w.waiters.Add(-1)
	}
	delete(w.chans, b)
}

// asyncLog returns a logger whose lines are written, in order, by a
// goroutine of their own, so that a full log pipe never stalls an event
// loop; beyond maxLogsInFlight lines waiting, lines are dropped and counted.
// The writer runs only while lines wait, so nothing is left running.
func asyncLog(log *slog.Logger, dropped *atomic.Uint64) *slog.Logger {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return slog.New(&asyncHandler{next: log.Handler(), q: &logQueue{dropped: dropped}})
}

const maxLogsInFlight = 64

type asyncHandler struct {
	next slog.Handler
	q    *logQueue
}

// logQueue holds the lines waiting for the writer, shared by a handler and
// those made from it (WithAttrs, WithGroup).
type logQueue struct {
	mu      sync.Mutex
	lines   []logLine
	writing bool
	dropped *atomic.Uint64
}

type logLine struct {
	h   slog.Handler
	ctx context.Context
	r   slog.Record
}

func (h *asyncHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *asyncHandler) Handle(ctx context.Context, r slog.Record) error {
	q := h.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.lines) >= maxLogsInFlight {
		q.dropped.Add(1)
		return nil
	}
	q.lines = append(q.lines, logLine{h.next, context.WithoutCancel(ctx), r.Clone()})
	if !q.writing {
		q.writing = true
		go q.write()
	}
	return nil
}

// write writes the waiting lines in order and returns when none is left.
func (q *logQueue) write() {
	for {
		q.mu.Lock()
		if len(q.lines) == 0 {
			q.writing = false
			q.mu.Unlock()
			return
		}
		l := q.lines[0]
		q.lines[0] = logLine{}
		q.lines = q.lines[1:]
		q.mu.Unlock()
		l.h.Handle(l.ctx, l.r)
	}
}

func (h *asyncHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &asyncHandler{next: h.next.WithAttrs(as), q: h.q}
}

func (h *asyncHandler) WithGroup(name string) slog.Handler {
	return &asyncHandler{next: h.next.WithGroup(name), q: h.q}
}

// pick chooses a backend for a connection whose dials to the backends in
// tried failed: the strategy's pick, unless it is one of those (a retry goes
// elsewhere, also while the passive policy still counts the failed one as
// up), in which case the first eligible backend not tried, from a rotating
// start. Nil when there is none.
func (s *Server) pick(t *Table, tried []*backend.Backend) *backend.Backend {
	b := t.Strategy.Pick(t.Backends)
	if b == nil || !slices.Contains(tried, b) {
		return b
	}
	n := len(t.Backends)
	start := int(s.retryStart.Add(1) % uint64(n))
	for i := range n {
		if c := t.Backends[(start+i)%n]; c.Eligible() && !slices.Contains(tried, c) {
			return c
		}
	}
	return nil
}

// dialFailed records a failed dial to b and marks b down when the passive
// health policy says so; the active checks bring it back.
func (s *Server) dialFailed(b *backend.Backend, set *Settings, reason string) {
	if b.DialFailed(set.Passive) {
		b.Transition(s.log, false, "dial failed: "+reason)
	}
}

// gate is the max_connections cap: a connection takes a slot before it is
// accepted, so at the cap clients wait in the kernel backlog rather than
// being accepted and dropped.
type gate struct {
	active   atomic.Int64
	limit    atomic.Int64 // 0 = no cap
	atCap    atomic.Int64 // ns spent with an accept held back by the cap
	capSince atomic.Int64 // unix ns since an accept is held back; 0 = none is
	// heldSince is capSince for the figures: it ends when a slot frees, not
	// at the next accept (which may come much later when nobody waited).
	heldSince atomic.Int64
	// onFree runs when a slot frees or the cap is raised while an accept is
	// held back, so that the engine accepts again.
	onFree func()
}

func (g *gate) setLimit(n int64) {
	g.limit.Store(n)
	if n == 0 || g.active.Load() < n {
		g.endHold()
	}
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
			now := time.Now().UnixNano()
			g.capSince.CompareAndSwap(0, now)
			g.heldSince.CompareAndSwap(0, now)
			// A release or a raised cap between the check and the mark saw
			// no one held back and woke no one: look again after marking.
			if g.active.Load() < g.limit.Load() {
				continue
			}
			return false
		}
		if g.active.CompareAndSwap(n, n+1) {
			if g.capSince.Load() != 0 { // a load, not a store, per accept
				g.capSince.Store(0)
			}
			g.endHold()
			return true
		}
	}
}

// release frees a slot: the connection ended, or none was accepted.
func (g *gate) release() {
	g.active.Add(-1)
	g.endHold()
	if g.capSince.Load() != 0 {
		g.onFree()
	}
}

// endHold ends the time an accept was held back, if it was: a slot freed
// or was taken.
func (g *gate) endHold() {
	if g.heldSince.Load() == 0 {
		return
	}
	if since := g.heldSince.Swap(0); since != 0 {
		g.atCap.Add(time.Now().UnixNano() - since)
	}
}

// heldBack reports whether an accept is held back at the cap now.
func (g *gate) heldBack() bool { return g.heldSince.Load() != 0 }
