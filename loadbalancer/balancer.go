package loadbalancer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	updates chan update
	done    chan struct{}

	reloadsOK, reloadsFailed atomic.Uint64

	mu        sync.Mutex // guards the fields below, read by Snapshot
	cfg       *config.Config
	addr      net.Addr
	pool      []*backend.Backend
	draining  map[*backend.Backend]struct{}
	lastError string
}

type update struct {
	cfg   *config.Config
	reply chan error
}

// ErrStopped is returned by Apply once the balancer has shut down.
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
		log:      log,
		srv:      proxy.New(log, nil, proxy.Settings{}),
		checker:  health.New(log, health.Settings{}),
		updates:  make(chan update),
		done:     make(chan struct{}),
		cfg:      &config.Config{},
		draining: map[*backend.Backend]struct{}{},
	}
	limit, limitErr := raiseDescriptorLimit()
	r := &running{stopListener: func() {}, stopDrains: make(chan struct{})}
	if _, err := b.apply(ctx, cfg, r); err != nil {
		b.checker.Stop()
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
// until the change is in force.
func (b *Balancer) Apply(cfg *config.Config) error {
	u := update{cfg: cfg, reply: make(chan error, 1)}
	select {
	case b.updates <- u:
	case <-b.done:
		return ErrStopped
	}
	return <-u.reply
}

// ReloadFailed counts and records a reload that never reached Apply because
// its config did not load.
func (b *Balancer) ReloadFailed(err error) {
	b.reloadsFailed.Add(1)
	b.mu.Lock()
	b.lastError = err.Error()
	b.mu.Unlock()
}

// run applies updates until ctx ends, then shuts down.
func (b *Balancer) run(ctx context.Context, r *running) {
	defer close(b.done)
	for {
		select {
		case u := <-b.updates:
			changes, err := b.apply(ctx, u.cfg, r)
			if err != nil {
				b.ReloadFailed(err)
			} else {
				b.log.Info("config applied", "changes", strings.Join(changes, "; "))
			}
			u.reply <- err
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

// serve accepts on ln until the returned stop is called or ctx ends.
func (b *Balancer) serve(ctx context.Context, ln *net.TCPListener, serving *sync.WaitGroup) (stop func()) {
	lctx, cancel := context.WithCancel(ctx)
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
	b.log.Info("load balancer stopped")
}

// apply diffs cfg against the running config and changes the running system,
// returning what changed. Only an unknown strategy name and binding a new
// listen address can fail, so they go first: past them the change is applied
// whole. Over the empty config Start begins with, it builds everything: that
// is the start.
func (b *Balancer) apply(ctx context.Context, cfg *config.Config, r *running) (changes []string, err error) {
	old := b.Config()
	// Every valid config has a backend: only the empty one Start begins
	// with has none, and applying over it is not a reload.
	starting := len(old.Backends) == 0
	// config.Load checked the strategy name, but a hand-built config may name
	// none: find out before anything changes (a strategy for no backend
	// costs nothing).
	if _, err := strategy.New(cfg.Strategy, nil, strategy.Options{}); err != nil {
		return nil, err
	}
	var newLn *net.TCPListener
	if cfg.Proxy.ListenAddress != old.Proxy.ListenAddress {
		ln, err := proxy.Listen(cfg.Proxy.ListenAddress)
		if err != nil {
			if starting {
				return nil, err
			}
			return nil, fmt.Errorf("reload rejected, still listening on %s: %w", old.Proxy.ListenAddress, err)
		}
		newLn = ln
	}

	current := map[int]*backend.Backend{}
	b.mu.Lock()
	for _, be := range b.pool {
		current[be.ID] = be
	}
	b.mu.Unlock()
	pool := make([]*backend.Backend, 0, len(cfg.Backends))
	var added []*backend.Backend
	for _, bc := range cfg.Backends {
		be, ok := current[bc.ID]
		if ok && be.Address == bc.Address {
			delete(current, bc.ID)
			if be.Name() != bc.Name {
				changes = append(changes, fmt.Sprintf("backend %d renamed %s→%s", bc.ID, be.Name(), bc.Name))
				be.SetName(bc.Name)
			}
			if be.Weight() != bc.Weight {
				changes = append(changes, fmt.Sprintf("backend %d weight %d→%d", bc.ID, be.Weight(), bc.Weight))
				be.SetWeight(bc.Weight)
			}
			pool = append(pool, be)
			continue
		}
		be = backend.New(bc.ID, bc.Name, bc.Address, bc.Weight)
		added = append(added, be)
		changes = append(changes, fmt.Sprintf("backend %d added at %s", bc.ID, bc.Address))
		pool = append(pool, be)
	}
	strat, _ := strategy.New(cfg.Strategy, pool, strategy.Options{Adaptive: cfg.Adaptive}) // the name was checked above
	if cfg.Strategy != old.Strategy {
		changes = append(changes, fmt.Sprintf("strategy %s→%s", old.Strategy, cfg.Strategy))
	}
	if proxySettings(cfg) != proxySettings(old) {
		changes = append(changes, "proxy settings")
	}
	if healthSettings(cfg) != healthSettings(old) {
		changes = append(changes, "health settings")
	}
	if cfg.Adaptive != old.Adaptive {
		changes = append(changes, "adaptive weights")
	}
	if cfg.Runtime != old.Runtime {
		changes = append(changes, "runtime settings")
	}

	b.srv.SetSettings(proxySettings(cfg))
	b.checker.SetSettings(healthSettings(cfg)) // before Watch: new loops read them
	for _, be := range added {
		b.checker.Watch(ctx, be)
	}
	b.srv.SetTable(&proxy.Table{Backends: pool, Strategy: strat})

	b.mu.Lock()
	b.cfg, b.pool = cfg, pool
	if !starting {
		b.reloadsOK.Add(1) // with the config, so readers never see one without the other
	}
	for _, gone := range current {
		b.draining[gone] = struct{}{}
	}
	b.mu.Unlock()
	for _, gone := range current {
		changes = append(changes, fmt.Sprintf("backend %d at %s draining", gone.ID, gone.Address))
		gone.Drain()
		b.checker.Forget(gone)
		r.drains.Go(func() { b.drain(gone, cfg.Runtime.DrainTimeout, r.stopDrains) })
	}

	if newLn != nil {
		r.stopListener()
		r.stopListener = b.serve(ctx, newLn, &r.serving)
		b.mu.Lock()
		b.addr = newLn.Addr()
		b.mu.Unlock()
		if !starting {
			changes = append(changes, fmt.Sprintf("listening on %s instead of %s", cfg.Proxy.ListenAddress, old.Proxy.ListenAddress))
		}
	}
	if len(changes) == 0 {
		changes = append(changes, "no change")
	}
	return changes, nil
}

// drain waits for a removed backend's connections to end, closes whatever is
// left after timeout, and forgets the backend. At shutdown (stop) it stops
// waiting: the shutdown closes every connection itself.
func (b *Balancer) drain(be *backend.Backend, timeout time.Duration, stop <-chan struct{}) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	select {
	case <-b.srv.Drained(be):
	case <-deadline.C:
		n := b.srv.CloseBackend(be)
		b.log.Info("drain timeout reached: closed connections", "backend", be.Name(), "address", be.Address, "closed", n)
	case <-stop:
	}
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
	ListenAddress string             `json:"listen_address"`
	Strategy      string             `json:"strategy"`
	Backends      []backend.Snapshot `json:"backends"`
	Draining      []backend.Snapshot `json:"draining"`
	Proxy         proxy.Stats        `json:"proxy"`
	ReloadsOK     uint64             `json:"reloads_ok"`
	ReloadsFailed uint64             `json:"reloads_failed"`
	LastError     string             `json:"last_reload_error,omitempty"`
	HealthChecks  uint64             `json:"health_checks"`
	HealthFailed  uint64             `json:"health_checks_failed"`
	HealthLocal   uint64             `json:"health_checks_local_failures"` // failed on this host (out of fds, ports): in neither count above
}

// Snapshot reads the current state without blocking the proxy.
func (b *Balancer) Snapshot() Snapshot {
	b.mu.Lock()
	s := Snapshot{
		ListenAddress: b.addr.String(),
		Strategy:      b.cfg.Strategy,
		LastError:     b.lastError,
		Backends:      make([]backend.Snapshot, 0, len(b.pool)),
		Draining:      []backend.Snapshot{},
	}
	for _, be := range b.pool {
		s.Backends = append(s.Backends, be.Snapshot())
	}
	for be := range b.draining {
		s.Draining = append(s.Draining, be.Snapshot())
	}
	s.ReloadsOK, s.ReloadsFailed = b.reloadsOK.Load(), b.reloadsFailed.Load()
	b.mu.Unlock()
	s.Proxy = b.srv.Stats()
	s.HealthChecks, s.HealthFailed = b.checker.Counts()
	s.HealthLocal = b.checker.LocalFailures()
	return s
}
