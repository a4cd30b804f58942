package loadbalancer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/config"
	"github.com/lemonade-lb/lemonade/loadbalancer/strategy"
	"github.com/lemonade-lb/lemonade/observability/testnet"
)

// load runs clients making one request per new connection through lb until
// stop is closed (at most 30s or 50000 requests), counting failures. A dial
// refused on an address that is no longer the listen address is the client
// addressing the old listener after a listen change, not a lost connection:
// the client retries on the new one.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []error
	byBackend  sync.Map // name → *atomic.Int64
	wg         sync.WaitGroup
}

func startLoad(lb *Balancer, clients int, stop <-chan struct{}) *load {
	l := &load{}
	deadline := time.Now().Add(30 * time.Second)
	for range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for l.ok.Load()+l.failed.Load() < 50000 && time.Now().Before(deadline) {
				select {
				case <-stop:
					return
				default:
				}
				addr := lb.Addr().String()
				body, err := get(addr, "")
				if err != nil && errors.Is(err, syscall.ECONNREFUSED) && lb.Addr().String() != addr {
					continue
				}
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					l.errs = append(l.errs, err)
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
				n, _ := l.byBackend.LoadOrStore(body, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
			}
		}()
	}
	return l
}

func (l *load) hits(name string) int64 {
	if n, ok := l.byBackend.Load(name); ok {
		return n.(*atomic.Int64).Load()
	}
	return 0
}

func freePort(t *testing.T) string { t.Helper(); return testnet.Addr(t) }

func TestReloadsUnderLoadLoseNothing(t *testing.T) {
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	cfg := testConfig(t, "round_robin", a, b)
	cfg.Runtime.DrainTimeout = 5 * time.Second
	lb := startBalancer(t, cfg)
	stop := make(chan struct{})
	l := startLoad(lb, 4, stop)
	var stopOnce sync.Once
	stopLoad := func() { stopOnce.Do(func() { close(stop); l.wg.Wait() }) }
	defer stopLoad() // on a failure too, so no client goroutine is left behind

	// Between reloads the load runs: some requests complete on each config.
	const perStep = 30
	progress := func(what string) {
		t.Helper()
		target := l.ok.Load() + perStep
		waitFor(t, what, func() bool { return l.ok.Load() >= target || l.failed.Load() > 0 })
	}
	step := func(what string, change func(*config.Config)) {
		t.Helper()
		progress("requests before " + what)
		next := clone(lb.Config())
		change(next)
		if err := next.Validate(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if err := lb.Apply(next); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	step("add c", func(c2 *config.Config) {
		c2.Backends = append(c2.Backends, config.Backend{ID: 2, Name: "c", Address: c.addr, Weight: 1})
	})
	before := l.hits("c")
	waitFor(t, "added backend c gets traffic", func() bool { return l.hits("c") > before })
	step("remove a", func(c2 *config.Config) { c2.Backends = c2.Backends[1:] })
	step("reweigh", func(c2 *config.Config) { c2.Backends[0].Weight = 3 })
	for _, s := range strategy.Names() {
		step("strategy "+s, func(c2 *config.Config) { c2.Strategy = s })
	}
	step("listen address", func(c2 *config.Config) { c2.Proxy.ListenAddress = freePort(t) })
	step("listen address again", func(c2 *config.Config) { c2.Proxy.ListenAddress = freePort(t) })
	progress("requests after the last reload")
	stopLoad()
	if n := l.failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed across the reloads; first errors: %v", n, n+l.ok.Load(), l.errs[:min(len(l.errs), 5)])
	}
	if l.ok.Load() < 100 {
		t.Fatalf("only %d requests ran", l.ok.Load())
	}
	t.Logf("%d requests, none failed; a=%d b=%d c=%d", l.ok.Load(), l.hits("a"), l.hits("b"), l.hits("c"))
}

func writeConfig(t *testing.T, path, strategy string, backends ...*backendServer) {
	t.Helper()
	writeConfigPolling(t, path, 100*time.Millisecond, strategy, backends...)
}

func writeConfigPolling(t *testing.T, path string, poll time.Duration, strategy string, backends ...*backendServer) {
	t.Helper()
	body := fmt.Sprintf("runtime:\n  config_watch_interval_millis: %d\n  drain_timeout_millis: 1000\nproxy:\n  listen_address: 127.0.0.1:0\nstrategy: %s\nhealth:\n  interval: 50ms\nbackends:\n", poll.Milliseconds(), strategy)
	for i, b := range backends {
		body += fmt.Sprintf("  - id: %d\n    name: %s\n    address: %q\n", i, b.name, b.addr)
	}
	writeInPlace(t, path, body)
}

func writeInPlace(t *testing.T, path, body string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(body); err != nil {
		t.Fatal(err)
	}
}

func TestWatchFileAppliesEditsAndIgnoresBadOnes(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	dir := t.TempDir()
	path := filepath.Join(dir, "lb.yaml")
	writeConfig(t, path, "round_robin", a)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	lb := startBalancer(t, cfg)
	hup := watchFile(t, lb, path)

	strategyIs := func(what, want string) {
		t.Helper()
		waitFor(t, what, func() bool { return lb.Config().Strategy == want })
	}

	// In-place truncate and write.
	writeConfig(t, path, "least_connections", a, b)
	strategyIs("truncate-and-write", "least_connections")
	if n := len(lb.Snapshot().Backends); n != 2 {
		t.Fatalf("%d backends after the edit, want 2", n)
	}

	// Write a temporary file and rename it over the config.
	tmp := filepath.Join(dir, ".lb.yaml.tmp")
	writeConfig(t, tmp, "adaptive", a, b)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	strategyIs("atomic rename", "adaptive")

	// Invalid files: counted, logged, and the running config stays.
	okBefore := lb.Snapshot().ReloadsOK
	for i, bad := range []string{
		"strategy: [unclosed\n",
		"strategy: random\nbackends:\n  - id: 0\n    address: " + a.addr + "\n",
		"backends:\n  - id: 0\n    address: " + a.addr + "\n  - id: 0\n    address: " + b.addr + "\n",
	} {
		writeInPlace(t, path, bad)
		waitFor(t, "rejected reload", func() bool { return lb.Snapshot().ReloadsFailed >= uint64(i+1) })
	}
	s := lb.Snapshot()
	if s.Strategy != "adaptive" || len(s.Backends) != 2 || s.ReloadsOK != okBefore || s.LastError == "" {
		t.Fatalf("after invalid files: %+v", s)
	}
	for range 4 {
		if _, err := get(lb.Addr().String(), ""); err != nil {
			t.Fatalf("traffic after an invalid file: %v", err)
		}
	}

	// Fixing the file applies it.
	writeConfig(t, path, "weighted_round_robin", b)
	strategyIs("fixed file", "weighted_round_robin")

	// SIGHUP reloads even an unchanged file.
	okBefore = lb.Snapshot().ReloadsOK
	hup <- syscall.SIGHUP
	waitFor(t, "SIGHUP reload", func() bool { return lb.Snapshot().ReloadsOK == okBefore+1 })
}

func TestBurstOfWritesAppliesOnce(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	path := filepath.Join(t.TempDir(), "lb.yaml")
	writeConfigPolling(t, path, time.Hour, "round_robin", a) // file events only
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	lb := startBalancer(t, cfg)
	watchFile(t, lb, path)
	// The watcher is set up and has had its first look once a probe edit is
	// applied: the first look (made after the watch is added) or a file event
	// applies it, whichever comes first. Polling is off (an hour).
	writeConfigPolling(t, path, time.Hour, "least_connections", a)
	waitFor(t, "probe edit applied", func() bool { return lb.Config().Strategy == "least_connections" })
	names := strategy.Names()
	if names[len(names)-1] != "adaptive" {
		t.Fatalf("strategy names %v: the test expects adaptive last", names)
	}
	// A burst slower than the settle window may rightly be applied in
	// parts; on an overloaded machine the burst is tried again.
	for attempt := 1; ; attempt++ {
		base := lb.Snapshot().ReloadsOK
		began := time.Now()
		for _, s := range names {
			writeConfigPolling(t, path, time.Hour, s, a, b) // five writes within a few ms
		}
		took := time.Since(began)
		waitFor(t, "burst applied", func() bool { return lb.Config().Strategy == "adaptive" })
		// A marker edit after the burst: the watcher handles events in order, so
		// once the marker is applied any late reload of the burst has happened.
		writeConfigPolling(t, path, time.Hour, "round_robin", a, b)
		waitFor(t, "marker edit applied", func() bool { return lb.Config().Strategy == "round_robin" })
		if took >= settle {
			if attempt == 5 {
				t.Fatalf("5 bursts of %d writes each took longer than the %v settle window (the last %v): the machine is too loaded to test this", len(names), settle, took)
			}
			continue
		}
		if n := lb.Snapshot().ReloadsOK - base; n != 2 {
			t.Fatalf("%d reloads for one burst of writes and one marker edit, want 2 (1 for the burst)", n)
		}
		return
	}
}
