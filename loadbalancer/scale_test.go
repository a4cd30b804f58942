package loadbalancer

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

// The seed promises "tested with 100+ concurrent backends": 128 real HTTP
// backends on loopback behind one balancer. Round robin reaches every one of
// them, one health-check interval checks every one of them, and a reload that
// swaps half of them under load loses no request; afterwards the balancer
// holds no more descriptors or goroutines than before the load, and once it
// and the backends stop, the process is back where it started.
func TestScale128Backends(t *testing.T) {
	fds, goroutines := openDescriptors(), runtime.NumGoroutine()
	t.Run("scenario", testScale) // its cleanups (balancer, backends) run when it returns
	if t.Failed() {
		return
	}
	// Everything the scenario started has stopped: what is left is a few
	// runtime or test-framework goroutines at most, and no descriptor.
	const tolerance = 4
	waitFor(t, "goroutines back to their count before the test", func() bool {
		return runtime.NumGoroutine() <= goroutines+tolerance
	})
	if fds >= 0 {
		waitFor(t, "descriptors back to their count before the test", func() bool {
			return openDescriptors() <= fds+tolerance
		})
	}
}

const (
	scaleBackends = 128
	scaleInterval = time.Second // health.interval
	// scaleSlack is added to every health-check bound: generous for -race
	// on two loaded cores, where a check takes well under a millisecond.
	scaleSlack = 2 * time.Second
)

func testScale(t *testing.T) {
	// All the servers exist before the baseline is taken: 128 to start with
	// and the 64 that replace half of them.
	first := make([]*backendServer, scaleBackends)
	for i := range first {
		first[i] = newBackend(t, fmt.Sprintf("b%03d", i))
	}
	fresh := make([]*backendServer, scaleBackends/2)
	for i := range fresh {
		fresh[i] = newBackend(t, fmt.Sprintf("n%03d", i))
	}
	cfg := testConfig(t, "round_robin", first...)
	cfg.Health.Interval = scaleInterval
	// Longer than any wait below: a drain that ends within them ended
	// because its connections did, not because the timeout closed them.
	cfg.Runtime.DrainTimeout = 8 * time.Second
	started := time.Now()
	lb := startBalancer(t, cfg)
	fds, goroutines := openDescriptors(), runtime.NumGoroutine()

	// 1. Round robin reaches every backend. The rotation is exact over the
	// eligible backends (strategy.RoundRobin), so with all 128 up and no
	// failed dial 4×128 requests give each exactly 4, whatever the
	// clients' interleaving.
	rotation(t, lb, "first rotation", first, 4)

	// 2. Every backend is checked within one interval (the first check
	// comes at a random point of it), and again within the next.
	waitForWithin(t, "every backend checked once", scaleInterval+scaleSlack, func() bool {
		return allCheckedSince(lb.Snapshot().Backends, started)
	})
	t.Logf("128 backends checked %v after the start", time.Since(started).Round(time.Millisecond))
	round := time.Now()
	waitForWithin(t, "every backend checked again", scaleInterval+scaleInterval/10+scaleSlack, func() bool {
		return allCheckedSince(lb.Snapshot().Backends, round)
	})
	if s := lb.Snapshot(); s.HealthChecks < 2*scaleBackends || s.HealthFailed != 0 {
		t.Fatalf("%d health checks, %d failed; want at least %d, none failed", s.HealthChecks, s.HealthFailed, 2*scaleBackends)
	}

	// 3. Under load, a reload swaps half the backends: the odd ids go, 64
	// new ones with new ids come.
	stop := make(chan struct{})
	l := startLoad(lb, 8, stop)
	var stopOnce sync.Once
	stopLoad := func() { stopOnce.Do(func() { close(stop); l.wg.Wait() }) }
	defer stopLoad() // on a failure too, so no client goroutine is left behind
	progress := func(what string, n int64) {
		t.Helper()
		target := l.ok.Load() + n
		waitFor(t, what, func() bool { return l.ok.Load() >= target || l.failed.Load() > 0 })
	}
	progress("requests before the reload", scaleBackends)
	next := clone(cfg)
	next.Backends = next.Backends[:0]
	var kept, removed []*backendServer
	for i, bc := range cfg.Backends {
		if i%2 == 0 {
			next.Backends = append(next.Backends, bc)
			kept = append(kept, first[i])
		} else {
			removed = append(removed, first[i])
		}
	}
	for i, b := range fresh {
		next.Backends = append(next.Backends, config.Backend{ID: scaleBackends + i, Name: b.name, Address: b.addr, Weight: 1})
	}
	if err := next.Validate(); err != nil {
		t.Fatal(err)
	}
	applied := time.Now()
	d, err := lb.ApplyFrom(SourceAPI, next)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the reload swapping 64 of 128 backends took %v", time.Since(applied).Round(time.Microsecond))
	if len(d.Added) != len(fresh) || len(d.Drained) != len(removed) {
		t.Fatalf("reload added %d and drained %d backends, want %d and %d", len(d.Added), len(d.Drained), len(fresh), len(removed))
	}
	waitFor(t, "every new backend gets traffic", func() bool {
		for _, b := range fresh {
			if b.hits.Load() == 0 {
				return l.failed.Load() > 0
			}
		}
		return true
	})
	progress("requests after the reload", scaleBackends)
	stopLoad()
	if n := l.failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed across the reload; first errors: %v", n, n+l.ok.Load(), l.errs[:min(len(l.errs), 5)])
	}
	t.Logf("%d requests under load across the reload, none failed", l.ok.Load())

	// The removed backends drain: their connections end by themselves (the
	// drain timeout is longer than waitFor's 5s), and they are forgotten.
	waitFor(t, "the removed backends drained", func() bool {
		s := lb.Snapshot()
		return len(s.Draining) == 0 && s.Proxy.Active == 0
	})
	if s := lb.Snapshot(); len(s.Backends) != scaleBackends {
		t.Fatalf("%d backends after the reload, want %d", len(s.Backends), scaleBackends)
	}
	// The new backends are checked within an interval of the reload.
	waitForWithin(t, "every new backend checked", scaleInterval+scaleSlack, func() bool {
		return allCheckedSince(lb.Snapshot().Backends[len(kept):], applied)
	})
	// A fresh rotation over the new pool: each of the 128 gets exactly 2,
	// and a removed backend nothing.
	now := append(append([]*backendServer(nil), kept...), fresh...)
	before := hitsOf(removed)
	rotation(t, lb, "rotation after the reload", now, 2)
	for i, n := range hitsOf(removed) {
		if n != before[i] {
			t.Errorf("removed backend %s got %d requests after its drain", removed[i].name, n-before[i])
		}
	}

	// With the load over, the running balancer holds what it held before
	// it: no descriptor or goroutine per connection outlives it. (Health
	// checks open a short-lived connection now and then: hence the poll.)
	const tolerance = 8
	waitFor(t, "goroutines back to their count before the load", func() bool {
		return runtime.NumGoroutine() <= goroutines+tolerance
	})
	if fds >= 0 {
		waitFor(t, "descriptors back to their count before the load", func() bool {
			return openDescriptors() <= fds+tolerance
		})
	}
}

// getN makes n requests through addr, each on a new connection, from
// clients goroutines at once, and returns the first error.
func getN(addr string, n, clients int) error {
	var next atomic.Int64
	errs := make(chan error, clients)
	for range clients {
		go func() {
			for next.Add(1) <= int64(n) {
				if _, err := get(addr, ""); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	var first error
	for range clients {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// rotation makes want×len(backends) requests through lb, 8 clients at once,
// each on a new connection, and checks that each of backends (lb's whole
// pool) got want of them: exactly, when every backend stayed up and no dial
// failed (round robin's promise; a failed dial retries on the next backend);
// at least one otherwise.
func rotation(t *testing.T, lb *Balancer, what string, backends []*backendServer, want int64) {
	t.Helper()
	base, retries := hitsOf(backends), lb.Snapshot().Proxy.Retries
	if err := getN(lb.Addr().String(), int(want)*len(backends), 8); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	s := lb.Snapshot()
	exact := s.Proxy.Retries == retries
	for _, b := range s.Backends {
		if !b.Up || b.Transitions != 0 || b.ConnectFailures != 0 {
			exact = false
			t.Logf("%s: backend %s up=%v transitions=%d connect failures=%d", what, b.Name, b.Up, b.Transitions, b.ConnectFailures)
		}
	}
	var spread []int64
	for i, n := range hitsOf(backends) {
		n -= base[i]
		if n < 1 || exact && n != want {
			t.Errorf("%s: backend %s got %d requests, want %d", what, backends[i].name, n, want)
		}
		spread = append(spread, n)
	}
	if t.Failed() {
		t.FailNow()
	}
	if !exact {
		t.Logf("%s: a dial failed or a backend changed state, so only at least one each is asserted: %v", what, spread)
	}
}

func hitsOf(backends []*backendServer) []int64 {
	n := make([]int64, len(backends))
	for i, b := range backends {
		n[i] = b.hits.Load()
	}
	return n
}

// allCheckedSince reports whether every backend had an active check after
// since.
func allCheckedSince(backends []backend.Snapshot, since time.Time) bool {
	for _, b := range backends {
		if !b.LastCheck.After(since) {
			return false
		}
	}
	return true
}

// waitForWithin is waitFor with a bound of its own.
func waitForWithin(t *testing.T, what string, bound time.Duration, cond func() bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > bound {
			t.Fatalf("%s: not within %v", what, bound)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// openDescriptors is how many descriptors this process holds (Linux), or -1
// where /proc/self/fd is not there.
func openDescriptors() int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(entries)
}
