package loadbalancer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/accesslog"
	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
	"github.com/lemonade-lb/lemonade/loadbalancer/config"
	"github.com/lemonade-lb/lemonade/loadbalancer/health"
	"github.com/lemonade-lb/lemonade/loadbalancer/proxy"
	"github.com/lemonade-lb/lemonade/loadbalancer/strategy"
)

// Balancer is a running load balancer: a listener, the proxy, the health
// checker and the one place where a new config is applied. Start it with
// Start; it shuts down, draining, when the Start context ends.
type Balancer struct {
	log     *slog.Logger
	srv     *proxy.Server
	checker *health.Checker
	// access is the access log, made when a config first turns it on.
	access  atomic.Pointer[accesslog.Log]
	updates chan update
	done    chan struct{}

	reloadsOK, reloadsFailed atomic.Uint64

	mu        sync.Mutex // guards the fields below, read by Snapshot
	cfg       *config.Config
	addr      net.Addr
	pool      []*backend.Backend
	draining  map[*backend.Backend]struct{}
	lastError string
	// lastReload is when the config was last applied (the start too) or a
	// reload failed; lastReloadOK is which.
	lastReload   time.Time
	lastReloadOK bool
	// lastSource is where that config came from (SourceStart, SourceFile,
	// SourceAPI).
	lastSource string
	overrides  map[int]override // operator overrides by backend id; written by the run loop only
}

// update is a change for the run loop to make: do runs there, then done is
// closed.
type update struct {
	do   func(ctx context.Context, r *running)
	done chan struct{}
}

// Config sources, as Snapshot.LastReloadSource names them. The latest change
// wins, whatever its source.
const (
	SourceStart = "start" // the config the balancer started with
	SourceFile  = "file"  // the config file (WatchFile: an edit or SIGHUP)
	SourceAPI   = "api"   // the admin API (POST /api/v1/config)
	// SourceFleet is a rebuild because the fleet changed: its shared settings
	// or its discovered backends (Sources; the etcd source is package fleet).
	SourceFleet = "fleet"
)

// ErrStopped is returned by Apply, Plan and the override methods once the
// balancer has shut down.
var ErrStopped = errors.New("load balancer stopped")

// Start binds cfg's listen address and starts proxying, health checking and
// accepting config updates. When ctx ends the balancer stops accepting, lets
// open connections finish for up to runtime.drain_timeout_millis, closes the
// rest and closes Done.
//
// Starting is applying cfg over an empty running config (no listener, no
// backend): the first table is built by the same code as every reload.
func Start(ctx context.Context, log *slog.Logger, cfg *config.Config) (*Balancer, error) {
	b := &Balancer{
		log:       log,
		srv:       proxy.New(log, nil, proxy.Settings{}),
		checker:   health.New(log, health.Settings{}),
		updates:   make(chan update),
		done:      make(chan struct{}),
		cfg:       &config.Config{},
		draining:  map[*backend.Backend]struct{}{},
		overrides: map[int]override{},
	}
	limit, limitErr := raiseDescriptorLimit()
	r := &running{stopListener: func() {}, stopDrains: make(chan struct{})}
	if _, err := b.apply(ctx, SourceStart, cfg, r); err != nil {
		b.checker.Stop()
		b.closeAccessLog()
		return nil, err
	}
	logDescriptorLimit(log, limit, limitErr, cfg)
	go b.run(ctx, r)
	log.Info("load balancer started", "listen", b.Addr().String(), "strategy", cfg.Strategy, "backends", len(cfg.Backends))
	return b, nil
}

// running is what the run loop owns besides the config: the listener being
// served and the drains in progress.
type running struct {
	stopListener func() // stops serving the current listener
	serving      sync.WaitGroup
	drains       sync.WaitGroup
	stopDrains   chan struct{} // closed at shutdown, which closes every connection itself
}

// Addr is the address the balancer accepts connections on.
func (b *Balancer) Addr() net.Addr {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addr
}

// Done is closed when the balancer has shut down.
func (b *Balancer) Done() <-chan struct{} { return b.done }

// Config returns the config in force.
func (b *Balancer) Config() *config.Config {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cfg
}

// Apply makes cfg (whole and valid, as config.Load returns it) the running
// config: all of it, or, when an error is returned, none of it. It blocks
// until the change is in force. It is ApplyFrom for the config file.
func (b *Balancer) Apply(cfg *config.Config) error {
	_, err := b.ApplyFrom(SourceFile, cfg)
	return err
}

// ApplyFrom is Apply for a config from source (SourceFile, SourceAPI), which
// the log and Snapshot.LastReloadSource name; it returns what changed.
// Operator overrides of the backends cfg keeps stay in force.
func (b *Balancer) ApplyFrom(source string, cfg *config.Config) (Diff, error) {
	var d Diff
	var err error
	if stopped := b.do(func(ctx context.Context, r *running) {
		if d, err = b.apply(ctx, source, cfg, r); err != nil {
			b.reloadFailed(source, err)
			return
		}
		b.log.Info("config applied", "source", source, "changes", strings.Join(d.Summary(), "; "))
	}); stopped != nil {
		return Diff{}, stopped
	}
	return d, err
}

// Plan returns what ApplyFrom(cfg) would change now, changing nothing (a dry
// run). It does not bind a new listen address, so it cannot tell whether
// that address is free.
func (b *Balancer) Plan(cfg *config.Config) (Diff, error) {
	var d Diff
	var err error
	if stopped := b.do(func(context.Context, *running) {
		if _, err = strategy.New(cfg.Strategy, nil, strategy.Options{}); err != nil {
			return
		}
		b.mu.Lock()
		d = diff(b.cfg, cfg, b.pool, b.overrides)
		b.mu.Unlock()
	}); stopped != nil {
		return Diff{}, stopped
	}
	return d, err
}

// do runs f in the run loop, the one place the running system changes, and
// waits for it; once the balancer has stopped it returns ErrStopped instead.
func (b *Balancer) do(f func(ctx context.Context, r *running)) error {
	u := update{do: f, done: make(chan struct{})}
	select {
	case b.updates <- u:
	case <-b.done:
		return ErrStopped
	}
	<-u.done
	return nil
}

// ReloadFailed counts and records a reload that never reached Apply because
// its config did not load.
func (b *Balancer) ReloadFailed(err error) { b.reloadFailed(SourceFile, err) }

func (b *Balancer) reloadFailed(source string, err error) {
	b.reloadsFailed.Add(1)
	b.mu.Lock()
	b.lastError = err.Error()
	b.lastReload, b.lastReloadOK, b.lastSource = time.Now(), false, source
	b.mu.Unlock()
}

// run applies updates until ctx ends, then shuts down.
func (b *Balancer) run(ctx context.Context, r *running) {
	defer close(b.done)
	for {
		select {
		case u := <-b.updates:
			u.do(ctx, r)
			close(u.done)
		case <-ctx.Done():
			r.stopListener()
			r.serving.Wait()
			b.shutdown()
			close(r.stopDrains)
			r.drains.Wait()
			return
		}
	}
}

// serve accepts on ln, bound for p, until the returned stop is called or
// ctx ends; with p.ReusePort it offers ln meanwhile to the next balancer on
// the address (handoff_unix.go).
func (b *Balancer) serve(ctx context.Context, ln *net.TCPListener, serving *sync.WaitGroup, p config.Proxy) (stop func()) {
	lctx, cancel := context.WithCancel(ctx)
	if p.ReusePort {
		if dir, err := handoffDir(); err != nil {
			b.log.Warn("cannot offer the listening socket to the next balancer: an upgrade may reset queued connections", "error", err)
		} else {
			b.offerListener(lctx, ln, dir, p.ListenAddress)
		}
	}
	serving.Go(func() {
		if err := b.srv.Serve(lctx, ln); err != nil {
			b.log.Error("cannot serve the listener", "address", ln.Addr().String(), "error", err)
		}
	})
	return cancel
}

// shutdown lets open connections finish for the drain timeout, then closes
// what is left.
func (b *Balancer) shutdown() {
	b.checker.Stop()
	timeout := b.Config().Runtime.DrainTimeout
	b.log.Info("load balancer draining", "active_connections", b.srv.Stats().Active, "drain_timeout", timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if !b.srv.Wait(ctx) {
		b.log.Warn("drain timeout reached: closing open connections", "active_connections", b.srv.Stats().Active)
		b.srv.CloseAll()
		b.srv.Wait(context.Background())
	}
	b.closeAccessLog() // every connection has ended: its last lines are in
	b.log.Info("load balancer stopped")
}

// apply diffs cfg (from source) against the running config and changes the
// running system, returning what changed. Only an unknown strategy name and
// binding a new listen address can fail, so they go first: past them the
// change is applied whole. Over the empty config Start begins with, it builds
// everything: that is the start.
func (b *Balancer) apply(ctx context.Context, source string, cfg *config.Config, r *running) (Diff, error) {
	old := b.Config()
	// Every valid config has a listen address: only the empty one Start
	// begins with has none, and applying over it is not a reload.
	starting := old.Proxy.ListenAddress == ""
	// config.Load checked the strategy name, but a hand-built config may name
	// none: find out before anything changes (a strategy for no backend
	// costs nothing).
	if _, err := strategy.New(cfg.Strategy, nil, strategy.Options{}); err != nil {
		return Diff{}, err
	}
	var accessOut accesslog.Output
	accessChanged := cfg.AccessLog != old.AccessLog
	if accessChanged && cfg.AccessLog.Path != "" {
		out, err := accesslog.Open(cfg.AccessLog.Path)
		if err != nil {
			if starting {
				return Diff{}, err
			}
			return Diff{}, fmt.Errorf("reload rejected, the access log is unchanged: %w", err)
		}
		accessOut = out
	}
	var newLn *net.TCPListener
	if cfg.Proxy.ListenAddress != old.Proxy.ListenAddress {
		ln, err := b.listen(cfg.Proxy)
		if err != nil {
			accessOut.Close()
			if starting {
				return Diff{}, err
			}
			return Diff{}, fmt.Errorf("reload rejected, still listening on %s: %w", old.Proxy.ListenAddress, err)
		}
		newLn = ln
	}

	b.mu.Lock()
	d := diff(old, cfg, b.pool, b.overrides)
	b.mu.Unlock()
	pool := make([]*backend.Backend, 0, len(cfg.Backends))
	var added []*backend.Backend
	for i, bc := range cfg.Backends {
		be := d.keep[i]
		if be == nil {
			be = backend.New(bc.ID, bc.Name, bc.Address, bc.Weight)
			added = append(added, be)
		} else {
			be.SetName(bc.Name)
			be.SetWeight(weightFor(bc, b.overrides))
		}
		pool = append(pool, be)
	}

	b.srv.SetSettings(proxySettings(cfg))
	if accessChanged {
		b.useAccessLog(accessOut, cfg.AccessLog)
	}
	b.checker.SetSettings(healthSettings(cfg)) // before Watch: new loops read them
	for _, be := range added {
		b.checker.Watch(ctx, be)
	}
	b.publish(cfg, pool)

	b.mu.Lock()
	b.cfg, b.pool = cfg, pool
	if !starting {
		b.reloadsOK.Add(1) // with the config, so readers never see one without the other
	}
	b.lastReload, b.lastReloadOK, b.lastSource = time.Now(), true, source
	for _, gone := range d.gone {
		b.draining[gone] = struct{}{}
		b.dropOverride(gone.ID) // a removed or replaced backend's overrides go with it
	}
	b.mu.Unlock()
	for _, gone := range d.gone {
		gone.Drain()
		b.checker.Forget(gone)
		r.drains.Go(func() { b.drain(gone, cfg.Runtime.DrainTimeout, r.stopDrains) })
	}

	if newLn != nil {
		r.stopListener()
		r.stopListener = b.serve(ctx, newLn, &r.serving, cfg.Proxy)
		b.mu.Lock()
		b.addr = newLn.Addr()
		b.mu.Unlock()
	}
	return d, nil
}

// drain waits for a removed backend's connections to end, closes whatever is
// left after timeout, and forgets the backend. At shutdown (stop) it stops
// waiting: the shutdown closes every connection itself.
func (b *Balancer) drain(be *backend.Backend, timeout time.Duration, stop <-chan struct{}) {
	b.closeAfter(be, "removed", timeout, nil, stop)
	b.mu.Lock()
	delete(b.draining, be)
	b.mu.Unlock()
}

func proxySettings(c *config.Config) proxy.Settings {
	s := proxy.Settings{
		MaxConnections: c.Proxy.MaxConnections,
		ConnectTimeout: c.Proxy.ConnectTimeout,
		IdleTimeout:    c.Proxy.IdleTimeout,
		EventLoops:     c.Proxy.EventLoops,
		Passive: backend.Passive{
			MaxFails:     c.Health.Passive.MaxFails,
			FailDuration: c.Health.Passive.FailDuration,
		},
	}
	if c.Proxy.Retries != nil {
		s.Retries = *c.Proxy.Retries
	}
	return s
}

func healthSettings(c *config.Config) health.Settings {
	return health.Settings{
		Kind:     c.Health.Kind,
		Path:     c.Health.Path,
		Interval: c.Health.Interval,
		Timeout:  c.Health.Timeout,
		Rise:     c.Health.Rise,
		Fall:     c.Health.Fall,
	}
}

// Snapshot is the balancer's state for readers (admin, metrics, tests).
type Snapshot struct {
	ListenAddress string             `json:"listen_address"` // as bound: port 0 resolved
	Strategy      string             `json:"strategy"`
	Backends      []backend.Snapshot `json:"backends"`                    // in service, in config order
	Draining      []backend.Snapshot `json:"draining"`                    // removed or replaced by a reload, finishing their connections
	Proxy         proxy.Stats        `json:"proxy"`                       // the listener's counters
	ReloadsOK     uint64             `json:"reloads_ok"`                  // configs applied since the start
	ReloadsFailed uint64             `json:"reloads_failed"`              // configs rejected since the start
	LastError     string             `json:"last_reload_error,omitempty"` // why the latest rejected config was refused
	LastReload    time.Time          `json:"last_reload"`                 // the latest apply (the start's too) or failed reload
	LastReloadOK  bool               `json:"last_reload_ok"`              // whether it was applied
	// LastReloadSource is where that config came from: SourceStart,
	// SourceFile, SourceAPI or SourceFleet.
	LastReloadSource string `json:"last_reload_source"`
	HealthChecks     uint64 `json:"health_checks"`                // active checks run
	HealthFailed     uint64 `json:"health_checks_failed"`         // of which failed
	HealthLocal      uint64 `json:"health_checks_local_failures"` // failed on this host (out of fds, ports): in neither count above
	// HealthDurations are how long the active checks took, by result.
	HealthDurations health.Durations `json:"health_check_durations"`
	AccessLog       accesslog.Stats  `json:"access_log"` // zero until an access log is first turned on
}

// ReopenAccessLog opens the access log's file again (after a rotation:
// SIGUSR1), once the lines waiting are written to the old one. On an error
// the old file stays in use; accesslog.ErrOff says there is no access log.
func (b *Balancer) ReopenAccessLog() error {
	l := b.access.Load()
	if l == nil {
		return accesslog.ErrOff
	}
	return l.Reopen()
}

// useAccessLog writes the lines of the connections that end from now on to
// out (zero: none) as c says. The lines of the connections that ended
// before go to the old file; turned off, the proxy stops sending first.
func (b *Balancer) useAccessLog(out accesslog.Output, c config.AccessLog) {
	format, _ := accesslog.ParseFormat(c.Format) // validated by config.Load
	l := b.access.Load()
	if c.Path == "" {
		b.srv.SetAccessLog(nil)
		if l == nil {
			return
		}
	} else if l == nil {
		l = accesslog.New(b.log)
		b.access.Store(l)
	}
	if err := l.Use(out, format); err != nil {
		b.log.Error("access log: the change waits for the writer", "path", c.Path, "error", err)
	}
	if c.Path != "" {
		b.srv.SetAccessLog(l)
	}
}

func (b *Balancer) closeAccessLog() {
	if l := b.access.Load(); l != nil {
		if err := l.Close(); err != nil {
			b.log.Error("access log: lines still queued are lost", "error", err)
		}
	}
}

// Series returns the backends, in service then draining, one per identity
// (id, name, address), as metrics label them. A backend removed and added
// back at the same id and address while its old self still drains is two
// Backends with one identity: their counts are summed into one series (two
// would fail a scrape), and the state (up, draining, weight, averages) is
// the one in service's.
func (s Snapshot) Series() []backend.Snapshot {
	out := make([]backend.Snapshot, 0, len(s.Backends)+len(s.Draining))
	type key struct {
		id            int
		name, address string
	}
	seen := make(map[key]int, cap(out))
	for _, b := range slices.Concat(s.Backends, s.Draining) {
		k := key{b.ID, b.Name, b.Address}
		i, ok := seen[k]
		if !ok {
			seen[k] = len(out)
			out = append(out, b)
			continue
		}
		m := &out[i]
		m.Active += b.Active
		m.Total += b.Total
		m.ConnectFailures += b.ConnectFailures
		m.BytesIn += b.BytesIn
		m.BytesOut += b.BytesOut
		m.Transitions += b.Transitions
		m.ResponseTime.Add(b.ResponseTime)
	}
	return out
}

// Snapshot reads the current state without blocking the proxy.
func (b *Balancer) Snapshot() Snapshot {
	b.mu.Lock()
	s := Snapshot{
		ListenAddress:    b.addr.String(),
		Strategy:         b.cfg.Strategy,
		LastError:        b.lastError,
		LastReload:       b.lastReload,
		LastReloadOK:     b.lastReloadOK,
		LastReloadSource: b.lastSource,
		Backends:         make([]backend.Snapshot, 0, len(b.pool)),
		Draining:         []backend.Snapshot{},
	}
	for _, be := range b.pool {
		s.Backends = append(s.Backends, b.backendSnapshot(be))
	}
	for be := range b.draining {
		s.Draining = append(s.Draining, be.Snapshot())
	}
	s.ReloadsOK, s.ReloadsFailed = b.reloadsOK.Load(), b.reloadsFailed.Load()
	b.mu.Unlock()
	s.Proxy = b.srv.Stats()
	if l := b.access.Load(); l != nil {
		s.AccessLog = l.Stats()
	}
	s.HealthChecks, s.HealthFailed = b.checker.Counts()
	s.HealthLocal = b.checker.LocalFailures()
	s.HealthDurations = b.checker.Durations()
	return s
}
