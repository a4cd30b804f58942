// Package health runs the active health checks: each backend on its own
// jittered schedule, so one slow backend never delays the others. A check is
// a TCP connect or an HTTP GET; rise consecutive passes bring a backend up and
// fall consecutive failures take it down. A check dials the backend's
// resolved addresses as the proxy does, and a check that fails for a reason
// of this host (out of descriptors or ports) says nothing about the backend.
package health

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
)

// Settings configure the checks. They apply from the next check on.
type Settings struct {
	Kind     string        // "tcp" (connect) or "http" (GET Path, 2xx = pass)
	Path     string        // the GET path of an http check
	Interval time.Duration // between two checks of one backend
	Timeout  time.Duration // bound on one check
	Rise     int           // consecutive passes to go up; below 1 counts as 1
	Fall     int           // consecutive failures to go down; below 1 counts as 1
}

// localLogEvery spaces the logs of local failures: when descriptors run
// out, every backend's checks fail at once, and one line says it.
const localLogEvery = time.Minute

// Checker runs one check loop per watched backend.
type Checker struct {
	log      *slog.Logger
	settings atomic.Pointer[Settings]
	client   *http.Client
	dial     func(ctx context.Context, network, address string) (net.Conn, error) // tests inject failures

	checks        atomic.Uint64
	failures      atomic.Uint64
	localFailures atomic.Uint64
	lastLocalLog  atomic.Int64         // unix ns of the latest local-failure log line
	durations     [3]backend.Histogram // by result: resultPass, resultFail, resultLocal

	mu      sync.Mutex
	loops   map[*backend.Backend]context.CancelFunc
	running sync.WaitGroup
}

// New returns a Checker with settings s and no backends.
func New(log *slog.Logger, s Settings) *Checker {
	c := &Checker{
		log:   log,
		loops: map[*backend.Backend]context.CancelFunc{},
		dial:  (&net.Dialer{}).DialContext,
	}
	// No keep-alive: each check exercises the connect path like new clients
	// do. The URL keeps the backend's host:port (the Host header), but the
	// connection goes to the addresses the proxy would dial.
	c.client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DialContext: c.dialHTTP}}
	c.SetSettings(s)
	return c
}

// SetSettings replaces the settings from each backend's next check on.
func (c *Checker) SetSettings(s Settings) { c.settings.Store(&s) }

// Counts returns how many checks judged a backend and how many of them
// failed. Checks that failed for a local reason are in neither; see
// LocalFailures.
func (c *Checker) Counts() (checks, failures uint64) { return c.checks.Load(), c.failures.Load() }

// LocalFailures returns how many checks failed for a reason of this host
// (backend.LocalFailure) and so left their backend's state alone.
func (c *Checker) LocalFailures() uint64 { return c.localFailures.Load() }

// Durations are how long the checks took, by result.
type Durations struct {
	Pass         backend.HistogramSnapshot `json:"pass"`          // checks that passed
	Fail         backend.HistogramSnapshot `json:"fail"`          // checks that failed, counted against their backend
	LocalFailure backend.HistogramSnapshot `json:"local_failure"` // failed on this host: see LocalFailures
}

// The indexes of Checker.durations.
const (
	resultPass = iota
	resultFail
	resultLocal
)

// Durations reads how long the checks took, by result. A check cut short
// because its backend was forgotten or the checker stopped is in none.
func (c *Checker) Durations() Durations {
	return Durations{
		Pass:         c.durations[resultPass].Snapshot(),
		Fail:         c.durations[resultFail].Snapshot(),
		LocalFailure: c.durations[resultLocal].Snapshot(),
	}
}

// Watch starts checking b until ctx ends or Forget(b); watching twice is a no-op.
func (c *Checker) Watch(ctx context.Context, b *backend.Backend) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.loops[b]; ok {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	c.loops[b] = cancel
	c.running.Add(1)
	go func() {
		defer c.running.Done()
		c.loop(ctx, b)
	}()
}

// Forget stops checking b.
func (c *Checker) Forget(b *backend.Backend) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cancel, ok := c.loops[b]; ok {
		cancel()
		delete(c.loops, b)
	}
}

// Stop stops every loop and waits for them to return.
func (c *Checker) Stop() {
	c.mu.Lock()
	for b, cancel := range c.loops {
		cancel()
		delete(c.loops, b)
	}
	c.mu.Unlock()
	c.running.Wait()
	c.client.CloseIdleConnections()
}

func (c *Checker) loop(ctx context.Context, b *backend.Backend) {
	// The first check comes at a random point of the first interval so that
	// backends added together are not checked in lockstep.
	wait := time.Duration(rand.Int64N(int64(max(c.settings.Load().Interval, time.Millisecond))))
	var passes, fails int
	seenUp := b.Up()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		s := c.settings.Load()
		start := time.Now()
		err := c.Check(ctx, s, b)
		took := time.Since(start)
		if ctx.Err() != nil {
			return
		}
		result := resultPass
		switch {
		case backend.LocalFailure(err):
			result = resultLocal
		case err != nil:
			result = resultFail
		}
		c.durations[result].Observe(took)
		if result == resultLocal {
			// Out of descriptors or ports here: neither a pass nor a failure,
			// and the rise/fall counts carry on from where they were.
			c.noteLocalFailure(b, err)
			timer.Reset(jitter(s.Interval))
			continue
		}
		b.Checked(time.Now(), err == nil)
		c.checks.Add(1)
		if up := b.Up(); up != seenUp { // changed elsewhere (a failed dial): count afresh
			passes, fails, seenUp = 0, 0, up
		}
		if err == nil {
			passes, fails = passes+1, 0
			if !seenUp && passes >= max(s.Rise, 1) {
				b.Transition(c.log, true, fmt.Sprintf("%d consecutive %s checks passed", passes, s.Kind))
				seenUp = true
			}
		} else {
			c.failures.Add(1)
			passes, fails = 0, fails+1
			if seenUp && fails >= max(s.Fall, 1) {
				b.Transition(c.log, false, fmt.Sprintf("%d consecutive %s checks failed: %v", fails, s.Kind, err))
				seenUp = false
			}
		}
		timer.Reset(jitter(s.Interval))
	}
}

// jitter spreads d by ±10% so checks of many backends drift apart.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Second
	}
	return d - d/10 + time.Duration(rand.Int64N(int64(d/5)+1))
}

// noteLocalFailure counts a check that failed on this host and logs it at
// most once per localLogEvery.
func (c *Checker) noteLocalFailure(b *backend.Backend, err error) {
	n := c.localFailures.Add(1)
	now := time.Now().UnixNano()
	last := c.lastLocalLog.Load()
	if last != 0 && now-last < int64(localLogEvery) || !c.lastLocalLog.CompareAndSwap(last, now) {
		return
	}
	c.log.Warn("health check failed on this host, not on the backend; backend state left alone",
		"backend", b.Name(), "id", b.ID, "address", b.Address, "error", err, "local_failures", n)
}

// Check runs one check of b with s's kind and timeout, connecting to b's
// resolved addresses (b.Addrs) in order, as the proxy does. An error for
// which backend.LocalFailure is true is this host's, not b's.
func (c *Checker) Check(ctx context.Context, s *Settings, b *backend.Backend) error {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	if s.Kind != "http" {
		conn, err := c.dialBackend(ctx, b)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	// The transport dials on a context stripped of the deadline but not of
	// the values: the backend and the deadline travel in one.
	deadline, _ := ctx.Deadline()
	ctx = context.WithValue(ctx, dialTargetKey{}, dialTarget{b, deadline})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.Address+s.Path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "lemonade-health-check")
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: status %d", s.Path, resp.StatusCode)
	}
	return nil
}

type dialTargetKey struct{}

type dialTarget struct {
	b        *backend.Backend
	deadline time.Time
}

// dialHTTP is the HTTP transport's dial: to the checked backend's addresses.
func (c *Checker) dialHTTP(ctx context.Context, network, address string) (net.Conn, error) {
	t, ok := ctx.Value(dialTargetKey{}).(dialTarget)
	if !ok {
		return c.dial(ctx, network, address)
	}
	ctx, cancel := context.WithDeadline(ctx, t.deadline)
	defer cancel()
	return c.dialBackend(ctx, t.b)
}

// dialBackend connects to b's addresses in order until one answers. Each
// address gets an equal share of the time left (as net.Dialer does), so
// one black-holed address does not use up the whole check.
func (c *Checker) dialBackend(ctx context.Context, b *backend.Backend) (net.Conn, error) {
	addrs, err := b.Addrs()
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 { // only a Backend not made by backend.New
		return nil, fmt.Errorf("backend %q: no address", b.Address)
	}
	deadline, hasDeadline := ctx.Deadline()
	var first error
	for i, a := range addrs {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if hasDeadline && i < len(addrs)-1 {
			actx, cancel = context.WithTimeout(ctx, time.Until(deadline)/time.Duration(len(addrs)-i))
		}
		conn, err := c.dial(actx, "tcp", a.String())
		cancel()
		if err == nil {
			return conn, nil
		}
		if backend.LocalFailure(err) {
			return nil, err // every address would fail alike, and it is not b's fault
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	b.Reresolve() // the name may point elsewhere now
	return nil, first
}
