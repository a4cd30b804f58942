// Package health runs the active health checks: each backend on its own
// jittered schedule, so one slow backend never delays the others. A check is
// a TCP connect or an HTTP GET; rise consecutive passes bring a backend up and
// fall consecutive failures take it down.
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
	Kind     string // "tcp" (connect) or "http" (GET Path, 2xx = pass)
	Path     string
	Interval time.Duration
	Timeout  time.Duration
	Rise     int // consecutive passes to go up; below 1 counts as 1
	Fall     int // consecutive failures to go down; below 1 counts as 1
}

// Checker runs one check loop per watched backend.
type Checker struct {
	log      *slog.Logger
	settings atomic.Pointer[Settings]
	client   *http.Client

	checks   atomic.Uint64
	failures atomic.Uint64

	mu      sync.Mutex
	loops   map[*backend.Backend]context.CancelFunc
	running sync.WaitGroup
}

// New returns a Checker with settings s and no backends.
func New(log *slog.Logger, s Settings) *Checker {
	c := &Checker{
		log:   log,
		loops: map[*backend.Backend]context.CancelFunc{},
		// No keep-alive: each check exercises the connect path like new clients do.
		client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
	}
	c.SetSettings(s)
	return c
}

// SetSettings replaces the settings from each backend's next check on.
func (c *Checker) SetSettings(s Settings) { c.settings.Store(&s) }

// Counts returns how many checks ran and how many failed.
func (c *Checker) Counts() (checks, failures uint64) { return c.checks.Load(), c.failures.Load() }

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
		err := c.Check(ctx, s, b.Address)
		if ctx.Err() != nil {
			return
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

// Check runs one check of the backend at address with s's kind and timeout.
func (c *Checker) Check(ctx context.Context, s *Settings, address string) error {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	if s.Kind != "http" {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", address)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+address+s.Path, nil)
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
