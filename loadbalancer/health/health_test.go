package health

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

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
	checks, _ := c.Counts()
	time.Sleep(50 * time.Millisecond)
	if after, _ := c.Counts(); after > checks+1 {
		t.Fatalf("%d checks ran after Forget", after-checks)
	}
}

// A backend whose check hangs must not delay another backend's checks.
func TestSlowBackendDoesNotDelayOthers(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
	}))
	defer slow.Close()
	var fastHits atomic.Int64
	fast := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { fastHits.Add(1) }))
	defer fast.Close()
	c := New(slog.New(slog.DiscardHandler), Settings{Kind: "http", Path: "/", Interval: 10 * time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 1})
	defer c.Stop()
	c.Watch(context.Background(), backend.New(1, "slow", slow.Listener.Addr().String(), 1))
	c.Watch(context.Background(), backend.New(2, "fast", fast.Listener.Addr().String(), 1))
	time.Sleep(300 * time.Millisecond)
	if n := fastHits.Load(); n < 5 {
		t.Fatalf("fast backend checked %d times in 300ms at a 10ms interval", n)
	}
}
