package loadbalancer

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
	"github.com/lemonade-lb/lemonade/loadbalancer/config"
	"github.com/lemonade-lb/lemonade/loadbalancer/strategy"
	"github.com/lemonade-lb/lemonade/observability/testnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

// backendServer is an HTTP backend answering its name after its delay.
type backendServer struct {
	name  string
	addr  string
	delay atomic.Int64 // ns
	hits  atomic.Int64
	// hold, when set, makes each request wait for the channel to close
	// (after the hit is counted), so a test can keep a request in flight.
	hold atomic.Pointer[chan struct{}]
}

func newBackend(t *testing.T, name string) *backendServer { return newSlowBackend(t, name, 0) }

func newSlowBackend(t *testing.T, name string, delay time.Duration) *backendServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bs := &backendServer{name: name, addr: ln.Addr().String()}
	bs.delay.Store(int64(delay))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bs.hits.Add(1)
		if h := bs.hold.Load(); h != nil {
			<-*h
		}
		time.Sleep(time.Duration(bs.delay.Load()))
		io.WriteString(w, name)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return bs
}

func testConfig(t *testing.T, strategy string, backends ...*backendServer) *config.Config {
	t.Helper()
	c := config.Default()
	c.Proxy.ListenAddress = "127.0.0.1:0"
	c.Strategy = strategy
	c.Runtime.DrainTimeout = 2 * time.Second
	c.Health.Interval = 50 * time.Millisecond
	c.Health.Timeout = time.Second
	for i, b := range backends {
		c.Backends = append(c.Backends, config.Backend{ID: i, Name: b.name, Address: b.addr, Weight: 1})
	}
	retries := max(0, len(backends)-1)
	c.Proxy.Retries = &retries
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// startBalancerLogging is startBalancer with log as the balancer's logger.
func startBalancerLogging(t *testing.T, log *slog.Logger, cfg *config.Config) *Balancer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b, err := Start(ctx, log, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-b.Done():
		case <-time.After(10 * time.Second):
			t.Error("balancer did not stop within 10s")
		}
	})
	return b
}

// startBalancer starts b and stops it (waiting for the drain) at cleanup.
func startBalancer(t *testing.T, cfg *config.Config) *Balancer {
	t.Helper()
	return startBalancerLogging(t, quiet, cfg)
}

// get makes one request on a new connection through addr and returns the body.
func get(addr, query string) (string, error) {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/" + query)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// answers are the bodies of n requests through lb, each on a new connection.
func answers(t *testing.T, lb *Balancer, n int) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	for range n {
		body, err := get(lb.Addr().String(), "")
		if err != nil {
			t.Fatal(err)
		}
		seen[body] = true
	}
	return seen
}

// watchFile runs WatchFile on lb and path until the test ends, and returns
// the channel that stands for SIGHUP.
func watchFile(t *testing.T, lb *Balancer, path string) chan<- os.Signal {
	ctx, cancel := context.WithCancel(context.Background())
	hup := make(chan os.Signal, 1)
	watching := make(chan struct{})
	go func() { WatchFile(ctx, lb, path, hup); close(watching) }()
	t.Cleanup(func() { cancel(); <-watching })
	return hup
}

func TestRoundRobinThroughTheBalancer(t *testing.T) {
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	lb := startBalancer(t, testConfig(t, "round_robin", a, b, c))
	var got []string
	for range 6 {
		body, err := get(lb.Addr().String(), "")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, body)
	}
	if s := strings.Join(got, ""); s != "abcabc" {
		t.Fatalf("rotation %s, want abcabc", s)
	}
}

func TestLatencyStrategiesPreferTheFastBackend(t *testing.T) {
	for _, strategy := range []string{"fastest_response_time", "adaptive"} {
		t.Run(strategy, func(t *testing.T) {
			fast, slow := newSlowBackend(t, "fast", 5*time.Millisecond), newSlowBackend(t, "slow", 100*time.Millisecond)
			lb := startBalancer(t, testConfig(t, strategy, fast, slow))
			counts := map[string]int{}
			for range 100 {
				c, err := net.Dial("tcp", lb.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
				body, _ := io.ReadAll(c)
				c.Close()
				counts[string(body[strings.LastIndex(string(body), "\n")+1:])]++
			}
			if counts["fast"] < 80 {
				t.Fatalf("fast backend got %d of 100 connections: %v", counts["fast"], counts)
			}
		})
	}
}

// keepAlive is one client TCP connection through the balancer, used for
// HTTP/1.1 requests one after another.
type keepAlive struct {
	c net.Conn
	r *bufio.Reader
}

func dialKeepAlive(t *testing.T, addr string) *keepAlive {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &keepAlive{c: c, r: bufio.NewReader(c)}
}

func (k *keepAlive) get() (string, error) {
	k.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(k.c, "GET / HTTP/1.1\r\nHost: lemonade\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(k.r, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

func clone(c *config.Config) *config.Config {
	n := *c
	n.Backends = append([]config.Backend(nil), c.Backends...)
	return &n
}

func TestLongLivedConnectionSurvives100Reloads(t *testing.T) {
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	cfg := testConfig(t, "round_robin", a, b)
	lb := startBalancer(t, cfg)
	conn := dialKeepAlive(t, lb.Addr().String())
	first, err := conn.get()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		next := clone(cfg)
		next.Strategy = strategy.Names()[i%len(strategy.Names())]
		next.Backends[1].Weight = 1 + i%7
		if i%2 == 0 {
			next.Backends = append(next.Backends, config.Backend{ID: 9, Name: "c", Address: c.addr, Weight: 1})
		}
		if err := lb.Apply(next); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		body, err := conn.get()
		if err != nil || body != first {
			t.Fatalf("after reload %d the connection answered %q, %v; want %q on the same connection", i, body, err, first)
		}
	}
	if s := lb.Snapshot(); s.ReloadsOK != 100 || s.ReloadsFailed != 0 {
		t.Fatalf("reload counters %d ok, %d failed", s.ReloadsOK, s.ReloadsFailed)
	}
}

func TestRemovedBackendDrainsUntilTheTimeoutThenCloses(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	cfg := testConfig(t, "round_robin", a, b)
	const drainTimeout = 1500 * time.Millisecond
	cfg.Runtime.DrainTimeout = drainTimeout
	lb := startBalancer(t, cfg)
	conn := dialKeepAlive(t, lb.Addr().String())
	if body, err := conn.get(); err != nil || body != "a" {
		t.Fatalf("first request: %q, %v", body, err)
	}
	next := clone(cfg)
	next.Backends = next.Backends[1:] // remove a
	start := time.Now()
	if err := lb.Apply(next); err != nil {
		t.Fatal(err)
	}
	// Generous under load, but still well short of the drain timeout.
	if took := time.Since(start); took > drainTimeout*2/3 {
		t.Fatalf("Apply took %v: it waited for the %v drain", took, drainTimeout)
	}
	if body, err := conn.get(); err != nil || body != "a" {
		t.Fatalf("draining connection: %q, %v; want it to keep working", body, err)
	}
	for range 4 {
		if body, err := get(lb.Addr().String(), ""); err != nil || body != "b" {
			t.Fatalf("new connection went to %q, %v; want b", body, err)
		}
	}
	if d := lb.Snapshot().Draining; len(d) != 1 || d[0].Name != "a" || !d[0].Draining {
		t.Fatalf("draining list %+v", d)
	}
	// The drain ends (connections closed, then the backend forgotten) at the
	// timeout, since the keep-alive connection never ends by itself.
	waitFor(t, "draining list empty", func() bool { return len(lb.Snapshot().Draining) == 0 })
	if took := time.Since(start); took < drainTimeout {
		t.Fatalf("drain ended after %v, before the %v timeout, with a connection still open", took, drainTimeout)
	}
	if body, err := conn.get(); err == nil {
		t.Fatalf("connection to the removed backend still open after the drain timeout: %q", body)
	}
}

func TestAddedBackendTakesTrafficAtOnce(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	cfg := testConfig(t, "round_robin", a)
	lb := startBalancer(t, cfg)
	next := clone(cfg)
	next.Backends = append(next.Backends, config.Backend{ID: 1, Name: "b", Address: b.addr, Weight: 1})
	if err := lb.Apply(next); err != nil {
		t.Fatal(err)
	}
	if seen := answers(t, lb, 4); !seen["a"] || !seen["b"] {
		t.Fatalf("backends seen %v, want a and b", seen)
	}
}

func TestReloadThatCannotBindChangesNothing(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	cfg := testConfig(t, "round_robin", a)
	lb := startBalancer(t, cfg)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	next := clone(cfg)
	next.Proxy.ListenAddress = taken.Addr().String()
	next.Strategy = "least_connections"
	next.Backends = append(next.Backends, config.Backend{ID: 1, Name: "b", Address: b.addr, Weight: 1})
	err = lb.Apply(next)
	if err == nil || !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Fatalf("Apply error %v, want one naming %s", err, taken.Addr())
	}
	s := lb.Snapshot()
	if s.Strategy != "round_robin" || len(s.Backends) != 1 || s.ReloadsFailed != 1 {
		t.Fatalf("a rejected reload changed the running state: %+v", s)
	}
	if body, err := get(lb.Addr().String(), ""); err != nil || body != "a" {
		t.Fatalf("old listener: %q, %v", body, err)
	}
}

// An access log that cannot be opened at apply time (its directory went
// away after the config loaded) rejects the reload whole; one that opens
// starts logging at once, and the old file keeps what came before.
func TestReloadOfTheAccessLog(t *testing.T) {
	a := newBackend(t, "a")
	dir := t.TempDir()
	first := filepath.Join(dir, "first.log")
	cfg := testConfig(t, "round_robin", a)
	cfg.AccessLog = config.AccessLog{Path: first, Format: "text"}
	lb := startBalancer(t, cfg)
	if body, err := get(lb.Addr().String(), ""); err != nil || body != "a" {
		t.Fatalf("%q, %v", body, err)
	}
	waitFor(t, "a line in the first log", func() bool { return lb.Snapshot().AccessLog.Written >= 1 })

	next := clone(cfg)
	next.AccessLog = config.AccessLog{Path: filepath.Join(dir, "gone", "x.log"), Format: "json"}
	next.Strategy = "least_connections"
	if err := lb.Apply(next); err == nil || !strings.Contains(err.Error(), "access_log.path") {
		t.Fatalf("Apply error %v, want one naming access_log.path", err)
	}
	if s := lb.Snapshot(); s.Strategy != "round_robin" || s.AccessLog.Path != first {
		t.Fatalf("a rejected reload changed the running state: %+v", s)
	}

	second := filepath.Join(dir, "second.log")
	next.AccessLog.Path = second
	if err := lb.Apply(next); err != nil {
		t.Fatal(err)
	}
	if body, err := get(lb.Addr().String(), ""); err != nil || body != "a" {
		t.Fatalf("%q, %v", body, err)
	}
	waitFor(t, "a JSON line in the second log", func() bool {
		data, _ := os.ReadFile(second)
		return strings.HasPrefix(string(data), `{"time":`) && strings.Contains(string(data), `"backend":"a"`)
	})
	data, _ := os.ReadFile(first)
	if n := strings.Count(string(data), "\n"); n != 1 || !strings.Contains(string(data), "backend=a ") {
		t.Errorf("first log: %q", data)
	}

	off := clone(next)
	off.AccessLog.Path = ""
	if err := lb.Apply(off); err != nil {
		t.Fatal(err)
	}
	written := lb.Snapshot().AccessLog.Written
	if body, err := get(lb.Addr().String(), ""); err != nil || body != "a" {
		t.Fatalf("%q, %v", body, err)
	}
	waitFor(t, "the connection to end", func() bool { return lb.Snapshot().Proxy.Active == 0 })
	if s := lb.Snapshot().AccessLog; s.Written != written || s.Dropped != 0 || s.Path != "" {
		t.Errorf("log off, yet %+v (written before: %d)", s, written)
	}
}

func TestShutdownDrainsThenClosesWhatIsLeft(t *testing.T) {
	a := newBackend(t, "a")
	cfg := testConfig(t, "round_robin", a)
	cfg.Runtime.DrainTimeout = 300 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lb, err := Start(ctx, quiet, cfg)
	if err != nil {
		t.Fatal(err)
	}
	idle := dialKeepAlive(t, lb.Addr().String())
	if _, err := idle.get(); err != nil {
		t.Fatal(err)
	}
	// A request in flight when the shutdown starts completes: the backend
	// holds it until the shutdown has begun (the listener is closed).
	hold := make(chan struct{})
	a.hold.Store(&hold)
	inflight := make(chan error, 1)
	go func() { _, err := get(lb.Addr().String(), ""); inflight <- err }()
	waitFor(t, "request in flight at the backend", func() bool { return a.hits.Load() == 2 })
	start := time.Now()
	cancel()
	waitFor(t, "listener closed by the shutdown", func() bool {
		c, err := net.DialTimeout("tcp", lb.Addr().String(), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(hold)
	if err := <-inflight; err != nil {
		t.Fatalf("in-flight request failed during the drain: %v", err)
	}
	select {
	case <-lb.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("not stopped 5s after the shutdown began")
	}
	if took := time.Since(start); took < 250*time.Millisecond || took > 2*time.Second {
		t.Fatalf("shutdown took %v with an idle connection open; want about the 300ms drain timeout", took)
	}
	if _, err := idle.get(); err == nil {
		t.Fatal("idle connection still open after shutdown")
	}
	if _, err := net.Dial("tcp", lb.Addr().String()); err == nil {
		t.Fatal("still accepting after shutdown")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) { t.Helper(); testnet.WaitFor(t, what, cond) }

// A backend removed and added back while its old connections drain is one
// series: counts summed, state from the one in service.
func TestSnapshotSeriesMergesABackendAddedBackWhileItDrains(t *testing.T) {
	s := Snapshot{
		Backends: []backend.Snapshot{
			{ID: 0, Name: "a", Address: "127.0.0.1:1", Up: true, Weight: 3, Active: 1, Total: 10, BytesIn: 5, BytesOut: 7},
			{ID: 1, Name: "b", Address: "127.0.0.1:2", Active: 2},
		},
		Draining: []backend.Snapshot{
			{ID: 0, Name: "a", Address: "127.0.0.1:1", Draining: true, Weight: 1, Active: 4, Total: 20, ConnectFailures: 1, BytesIn: 50, BytesOut: 70},
			{ID: 2, Name: "c", Address: "127.0.0.1:3", Draining: true, Active: 3},
		},
	}
	got := s.Series()
	want := []backend.Snapshot{
		{ID: 0, Name: "a", Address: "127.0.0.1:1", Up: true, Weight: 3, Active: 5, Total: 30, ConnectFailures: 1, BytesIn: 55, BytesOut: 77},
		{ID: 1, Name: "b", Address: "127.0.0.1:2", Active: 2},
		{ID: 2, Name: "c", Address: "127.0.0.1:3", Draining: true, Active: 3},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}
