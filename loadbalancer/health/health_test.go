package health

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
	"github.com/lemonade-lb/lemonade/observability/testnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func waitFor(t *testing.T, what string, cond func() bool) { t.Helper(); testnet.WaitFor(t, what, cond) }

func TestHTTPCheckFollowsTheStatusWithRiseAndFall(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/healthz" || !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	b := backend.New(1, "web", srv.Listener.Addr().String(), 1)
	c := New(slog.New(slog.DiscardHandler), Settings{Kind: "http", Path: "/healthz", Interval: 20 * time.Millisecond, Timeout: time.Second, Rise: 2, Fall: 3})
	defer c.Stop()
	c.Watch(context.Background(), b)

	waitFor(t, "first checks", func() bool { return hits.Load() >= 2 })
	if !b.Up() {
		t.Fatal("healthy backend marked down")
	}
	healthy.Store(false)
	before := hits.Load()
	waitFor(t, "down after failures", func() bool { return !b.Up() })
	if n := hits.Load() - before; n < 3 {
		t.Fatalf("went down after %d checks, want fall=3", n)
	}
	healthy.Store(true)
	waitFor(t, "up after passes", func() bool { return b.Up() })
	s := b.Snapshot()
	if s.Transitions != 2 || !s.LastCheckOK || s.LastCheck.IsZero() {
		t.Fatalf("snapshot %+v", s)
	}
}

func TestTCPCheckBringsBackAPassivelyDownedBackend(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	b := backend.New(1, "tcp", ln.Addr().String(), 1)
	b.SetUp(false, "dial failed") // as the proxy does
	c := New(slog.New(slog.DiscardHandler), Settings{Kind: "tcp", Interval: 10 * time.Millisecond, Timeout: time.Second, Rise: 2, Fall: 1})
	defer c.Stop()
	c.Watch(context.Background(), b)
	waitFor(t, "up again", b.Up)
}

func TestFailingCheckMarksDownAndForgetStops(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	b := backend.New(1, "gone", addr, 1)
	c := New(slog.New(slog.DiscardHandler), Settings{Kind: "tcp", Interval: 10 * time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 2})
	defer c.Stop()
	c.Watch(context.Background(), b)
	waitFor(t, "down", func() bool { return !b.Up() })
	c.Forget(b)
	_, failed := c.Counts()
	// Let the checker run for a while, measured in its own checks rather than
	// a sleep: a live backend watched now is checked 5 times (5 intervals and
	// more). Its checks pass, so every failed check counted meanwhile is the
	// forgotten backend's; one may have been in flight at Forget.
	live, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	var accepted atomic.Int64
	go func() {
		for {
			conn, err := live.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			conn.Close()
		}
	}()
	c.Watch(context.Background(), backend.New(2, "live", live.Addr().String(), 1))
	waitFor(t, "live backend checked 5 times", func() bool { return accepted.Load() >= 5 })
	if _, after := c.Counts(); after > failed+1 {
		t.Fatalf("%d failed checks of the forgotten backend ran after Forget", after-failed)
	}
}

// A backend whose check hangs must not delay another backend's checks: the
// fast backend is checked again and again while the slow one's first check
// still hangs (its timeout is longer than waitFor's).
func TestSlowBackendDoesNotDelayOthers(t *testing.T) {
	hanging := make(chan struct{})
	var once sync.Once
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(hanging) })
		<-r.Context().Done()
	}))
	defer slow.Close()
	var fastHits atomic.Int64
	fast := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { fastHits.Add(1) }))
	defer fast.Close()
	c := New(slog.New(slog.DiscardHandler), Settings{Kind: "http", Path: "/", Interval: 10 * time.Millisecond, Timeout: time.Minute, Rise: 1, Fall: 1})
	defer c.Stop()
	c.Watch(context.Background(), backend.New(1, "slow", slow.Listener.Addr().String(), 1))
	<-hanging
	c.Watch(context.Background(), backend.New(2, "fast", fast.Listener.Addr().String(), 1))
	waitFor(t, "fast backend checked 5 times", func() bool { return fastHits.Load() >= 5 })
}

// listen returns a loopback listener that accepts and closes connections.
func listen(t *testing.T, network, address string) net.Listener {
	t.Helper()
	ln, err := net.Listen(network, address)
	if err != nil {
		t.Skipf("no %s loopback: %v", network, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln
}

func TestTCPCheckOverIPv4AndIPv6(t *testing.T) {
	c := New(slog.New(slog.DiscardHandler), Settings{})
	defer c.Stop()
	s := &Settings{Kind: "tcp", Timeout: 5 * time.Second}
	for _, tc := range []struct{ network, address string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
		t.Run(tc.network, func(t *testing.T) {
			ln := listen(t, tc.network, tc.address)
			if err := c.Check(context.Background(), s, backend.New(1, "b", ln.Addr().String(), 1)); err != nil {
				t.Fatalf("check of a listening backend: %v", err)
			}
			ln.Close()
			err := c.Check(context.Background(), s, backend.New(1, "b", ln.Addr().String(), 1))
			if err == nil || backend.LocalFailure(err) {
				t.Fatalf("check of a closed port: %v, want the backend's failure", err)
			}
		})
	}
}

// A backend given by name is checked at its resolved addresses, as the
// proxy dials it; the HTTP Host header stays the configured host:port.
func TestCheckDialsTheResolvedAddresses(t *testing.T) {
	hosts := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { hosts <- r.Host }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	b := backend.New(1, "web", "localhost:"+port, 1)
	if err := b.Resolve(context.Background()); err != nil {
		t.Fatal(err)
	}
	want, err := b.Addrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"tcp", "http"} {
		t.Run(kind, func(t *testing.T) {
			c := New(slog.New(slog.DiscardHandler), Settings{})
			defer c.Stop()
			var dialled []string
			c.dial = func(ctx context.Context, network, address string) (net.Conn, error) {
				dialled = append(dialled, address)
				var d net.Dialer
				return d.DialContext(ctx, network, address)
			}
			if err := c.Check(context.Background(), &Settings{Kind: kind, Path: "/health", Timeout: 5 * time.Second}, b); err != nil {
				t.Fatal(err)
			}
			if len(dialled) == 0 || dialled[0] != want[0].String() {
				t.Fatalf("dialled %v, want %v first", dialled, want[0])
			}
			if kind == "http" {
				if h := <-hosts; h != "localhost:"+port {
					t.Fatalf("Host %q, want localhost:%s", h, port)
				}
			}
		})
	}
}

// warnCounter is a slog handler that counts warnings.
type warnCounter struct{ n atomic.Int64 }

func (h *warnCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *warnCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn {
		h.n.Add(1)
	}
	return nil
}
func (h *warnCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *warnCounter) WithGroup(string) slog.Handler      { return h }

// Running out of descriptors here is not the backend's failure: its state
// stays as it was, the checks count neither way, and one line is logged.
func TestLocalFailureLeavesTheBackendAlone(t *testing.T) {
	for _, kind := range []string{"tcp", "http"} {
		for _, up := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/up=%v", kind, up), func(t *testing.T) {
				b := backend.New(1, "web", "127.0.0.1:9", 1) // never really dialled
				b.SetUp(up, "as it was")
				before := b.Snapshot()
				log := &warnCounter{}
				c := New(slog.New(log), Settings{Kind: kind, Path: "/", Interval: time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 1})
				defer c.Stop()
				c.dial = func(_ context.Context, network, _ string) (net.Conn, error) {
					return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("socket", syscall.EMFILE)}
				}
				c.Watch(context.Background(), b)
				waitFor(t, "local failures counted", func() bool { return c.LocalFailures() >= 5 })
				c.Stop()
				after := b.Snapshot()
				if after.Up != up || after.Transitions != before.Transitions || !after.LastCheck.IsZero() {
					t.Fatalf("backend state changed: before %+v, after %+v", before, after)
				}
				if checks, failures := c.Counts(); checks != 0 || failures != 0 {
					t.Fatalf("Counts() = %d, %d; local failures must count neither way", checks, failures)
				}
				if n := log.n.Load(); n != 1 {
					t.Fatalf("%d warnings for %d local failures, want 1 a minute", n, c.LocalFailures())
				}
				if d := c.Durations(); d.LocalFailure.Count() != c.LocalFailures() || d.Pass.Count()+d.Fail.Count() != 0 {
					t.Fatalf("durations %+v for %d local failures", d, c.LocalFailures())
				}
			})
		}
	}
}

// Each check's duration is counted under its result: every check that
// judged the backend is in the pass or the fail histogram.
func TestCheckDurationsByResult(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	c := New(slog.New(slog.DiscardHandler), Settings{Kind: "http", Path: "/", Interval: 5 * time.Millisecond, Timeout: 5 * time.Second, Rise: 1, Fall: 1})
	defer c.Stop()
	c.Watch(context.Background(), backend.New(1, "web", srv.Listener.Addr().String(), 1))
	waitFor(t, "passes", func() bool { return c.Durations().Pass.Count() >= 3 })
	healthy.Store(false)
	waitFor(t, "failures", func() bool { return c.Durations().Fail.Count() >= 3 })
	c.Stop()

	d := c.Durations()
	checks, failures := c.Counts()
	if d.Pass.Count() != checks-failures || d.Fail.Count() != failures || d.LocalFailure.Count() != 0 {
		t.Fatalf("durations pass %d, fail %d, local %d; checks %d, failures %d", d.Pass.Count(), d.Fail.Count(), d.LocalFailure.Count(), checks, failures)
	}
	if d.Pass.Sum <= 0 || d.Fail.Sum <= 0 {
		t.Fatalf("checks took no time: pass %v, fail %v", d.Pass.Sum, d.Fail.Sum)
	}
}
