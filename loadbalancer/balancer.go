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
func Start(ctx context.Context, log *slog.Logger, cfg *config.Config) (*Balancer, error) {
	ln, err := listen(cfg.Proxy.ListenAddress)
	if err != nil {
		return nil, err
	}
	b := &Balancer{
		log:      log,
		checker:  health.New(log, healthSettings(cfg)),
		updates:  make(chan update),
		done:     make(chan struct{}),
		cfg:      cfg,
		addr:     ln.Addr(),
		draining: map[*backend.Backend]struct{}{},
	}
	for _, bc := range cfg.Backends {
		b.pool = append(b.pool, backend.New(bc.ID, bc.Name, bc.Address, bc.Weight))
	}
	strat, err := strategy.New(cfg.Strategy, b.pool, cfg.Adaptive)
	if err != nil {
		ln.Close()
		return nil, err
	}
	b.srv = proxy.New(log, &proxy.Table{Backends: b.pool, Strategy: strat}, proxySettings(cfg))
	for _, be := range b.pool {
		b.checker.Watch(ctx, be)
	}
	go b.run(ctx, ln)
	log.Info("load balancer started", "listen", ln.Addr().String(), "strategy", cfg.Strategy, "backends", len(cfg.Backends))
	return b, nil
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

// run owns the listeners and applies updates until ctx ends, then shuts down.
func (b *Balancer) run(ctx context.Context, ln *net.TCPListener) {
	defer close(b.done)
	var serving sync.WaitGroup
	stopListener := b.serve(ctx, ln, &serving)
	var drains sync.WaitGroup
	stopDrains := make(chan struct{})
	for {
		select {
		case u := <-b.updates:
			err := b.apply(ctx, u.cfg, &stopListener, &serving, &drains, stopDrains)
			if err != nil {
				b.ReloadFailed(err)
			}
			u.reply <- err
		case <-ctx.Done():
			stopListener()
			serving.Wait()
			b.shutdown()
			close(stopDrains)
			drains.Wait()
			return
		}
	}
}

// serve accepts on ln until the returned stop is called or ctx ends.
func (b *Balancer) serve(ctx context.Context, ln *net.TCPListener, serving *sync.WaitGroup) (stop func()) {
	lctx, cancel := context.WithCancel(ctx)
	serving.Add(1)
	go func() {
		defer serving.Done()
		if err := b.srv.Serve(lctx, ln); err != nil {
			b.log.Error("cannot serve the listener", "address", ln.Addr().String(), "error", err)
		}
	}()
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
		all := b.backends()
		b.log.Warn("drain timeout reached: closing open connections", "active_connections", b.srv.Stats().Active)
		b.srv.CloseAll(all)
		b.srv.Wait(context.Background())
	}
	b.log.Info("load balancer stopped")
}

// backends returns the pool and the backends still draining.
func (b *Balancer) backends() []*backend.Backend {
	b.mu.Lock()
	defer b.mu.Unlock()
	all := append([]*backend.Backend(nil), b.pool...)
	for d := range b.draining {
		all = append(all, d)
	}
	return all
}

// apply diffs cfg against the running config and changes the running system.
// Only binding a new listen address can fail, so it goes first: past it the
// change is applied whole.
func (b *Balancer) apply(ctx context.Context, cfg *config.Config, stopListener *func(), serving, drains *sync.WaitGroup, stopDrains chan struct{}) error {
	old := b.Config()
	var newLn *net.TCPListener
	if cfg.Proxy.ListenAddress != old.Proxy.ListenAddress {
		ln, err := listen(cfg.Proxy.ListenAddress)
		if err != nil {
			return fmt.Errorf("reload rejected, still listening on %s: %w", old.Proxy.ListenAddress, err)
		}
		newLn = ln
	}

	var changes []string
	current := map[int]*backend.Backend{}
	b.mu.Lock()
	for _, be := range b.pool {
		current[be.ID] = be
	}
	b.mu.Unlock()
	pool := make([]*backend.Backend, 0, len(cfg.Backends))
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
		b.checker.Watch(ctx, be)
		changes = append(changes, fmt.Sprintf("backend %d added at %s", bc.ID, bc.Address))
		pool = append(pool, be)
	}
	strat, err := strategy.New(cfg.Strategy, pool, cfg.Adaptive)
	if err != nil { // config.Load validated the name; only a hand-built config gets here
		if newLn != nil {
			newLn.Close()
		}
		return err
	}
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
	b.checker.SetSettings(healthSettings(cfg))
	b.srv.SetTable(&proxy.Table{Backends: pool, Strategy: strat})

	b.mu.Lock()
	b.cfg, b.pool = cfg, pool
	b.reloadsOK.Add(1) // with the config, so readers never see one without the other
	for _, gone := range current {
		b.draining[gone] = struct{}{}
	}
	b.mu.Unlock()
	for _, gone := range current {
		changes = append(changes, fmt.Sprintf("backend %d at %s draining", gone.ID, gone.Address))
		gone.Drain()
		b.checker.Forget(gone)
		drains.Add(1)
		go func() {
			defer drains.Done()
			b.drain(gone, cfg.Runtime.DrainTimeout, stopDrains)
		}()
	}

	if newLn != nil {
		(*stopListener)()
		*stopListener = b.serve(ctx, newLn, serving)
		b.mu.Lock()
		b.addr = newLn.Addr()
		b.mu.Unlock()
		changes = append(changes, fmt.Sprintf("listening on %s instead of %s", cfg.Proxy.ListenAddress, old.Proxy.ListenAddress))
	}
	if len(changes) == 0 {
		changes = append(changes, "no change")
	}
	b.log.Info("config applied", "changes", strings.Join(changes, "; "))
	return nil
}

// drain waits for a removed backend's connections to end, closes whatever is
// left after timeout, and forgets the backend.
func (b *Balancer) drain(be *backend.Backend, timeout time.Duration, stop <-chan struct{}) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for be.Active() > 0 {
		select {
		case <-tick.C:
			continue
		case <-deadline.C:
			n := be.CloseAll()
			b.log.Info("drain timeout reached: closed connections", "backend", be.Name(), "address", be.Address, "closed", n)
		case <-stop:
		}
		break
	}
	b.mu.Lock()
	delete(b.draining, be)
	b.mu.Unlock()
}

func listen(address string) (*net.TCPListener, error) {
	// KeepAlive -1: accepted connections get no TCP keep-alive probes, as
	// with HAProxy and nginx by default; it saves syscalls per connection.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", address)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", address, err)
	}
	return ln.(*net.TCPListener), nil
}

func proxySettings(c *config.Config) proxy.Settings {
	s := proxy.Settings{
		MaxConnections: c.Proxy.MaxConnections,
		ConnectTimeout: c.Proxy.ConnectTimeout,
		IdleTimeout:    c.Proxy.IdleTimeout,
		EventLoops:     c.Proxy.EventLoops,
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
	return s
}
