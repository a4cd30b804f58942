package loadbalancer

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

// Start is the first apply: it is not counted as a reload, and what it
// built is what a reload diffs against.
func TestStartIsTheFirstApply(t *testing.T) {
	a := newBackend(t, "a")
	cfg := testConfig(t, "weighted_round_robin", a)
	lb := startBalancer(t, cfg)
	s := lb.Snapshot()
	if s.ReloadsOK != 0 || s.ReloadsFailed != 0 || s.Strategy != "weighted_round_robin" || len(s.Backends) != 1 || s.Backends[0].Name != "a" {
		t.Fatalf("after Start: %+v", s)
	}
	if lb.Config() != cfg {
		t.Fatal("Config() is not the config Start applied")
	}
	if body, err := get(lb.Addr().String(), ""); err != nil || body != "a" {
		t.Fatalf("through the balancer: %q, %v", body, err)
	}
	// The same config again changes nothing: the started state is the
	// config's, backend identity included.
	before := lb.Snapshot().Backends[0]
	if err := lb.Apply(clone(cfg)); err != nil {
		t.Fatal(err)
	}
	if after := lb.Snapshot(); after.ReloadsOK != 1 || after.Backends[0].Total != before.Total || after.ListenAddress != s.ListenAddress {
		t.Fatalf("re-applying the start config: %+v", after)
	}
}

func TestStartErrors(t *testing.T) {
	a := newBackend(t, "a")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cases := []struct {
		name   string
		change func(*config.Config)
		want   []string
	}{
		{"address taken", func(c *config.Config) { c.Proxy.ListenAddress = taken.Addr().String() },
			[]string{"listen on " + taken.Addr().String()}},
		{"unknown strategy", func(c *config.Config) { c.Strategy = "random" },
			[]string{`unknown strategy "random"`, "round_robin"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, "round_robin", a)
			tc.change(cfg)
			lb, err := Start(context.Background(), quiet, cfg)
			if err == nil {
				t.Fatalf("Start succeeded: %+v", lb.Snapshot())
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "reload") {
				t.Errorf("error %q speaks of a reload at start", err)
			}
		})
	}
}

// A hand-built config naming no strategy changes nothing, not even the
// names and weights kept in place.
func TestApplyOfAnUnknownStrategyChangesNothing(t *testing.T) {
	a := newBackend(t, "a")
	cfg := testConfig(t, "round_robin", a)
	lb := startBalancer(t, cfg)
	next := clone(cfg)
	next.Strategy = "random"
	next.Backends[0].Name, next.Backends[0].Weight = "renamed", 9
	if err := lb.Apply(next); err == nil || !strings.Contains(err.Error(), `"random"`) {
		t.Fatalf("Apply error %v, want one naming the strategy", err)
	}
	if s := lb.Snapshot(); s.Strategy != "round_robin" || s.Backends[0].Name != "a" || s.Backends[0].Weight != 1 || s.ReloadsFailed != 1 {
		t.Fatalf("a rejected reload changed the running state: %+v", s)
	}
}

// A removed backend stops draining as soon as its last connection ends,
// long before the drain timeout.
func TestDrainEndsWithTheLastConnection(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	cfg := testConfig(t, "round_robin", a, b)
	cfg.Runtime.DrainTimeout = time.Minute
	lb := startBalancer(t, cfg)
	conn := dialKeepAlive(t, lb.Addr().String())
	if body, err := conn.get(); err != nil || body != "a" {
		t.Fatalf("first request: %q, %v", body, err)
	}
	next := clone(cfg)
	next.Backends = next.Backends[1:]
	zero := 0
	next.Proxy.Retries = &zero
	if err := lb.Apply(next); err != nil {
		t.Fatal(err)
	}
	if d := lb.Snapshot().Draining; len(d) != 1 || d[0].Name != "a" {
		t.Fatalf("draining %+v, want a", d)
	}
	conn.c.Close()
	waitFor(t, "drain over once the connection closed", func() bool { return len(lb.Snapshot().Draining) == 0 })
}

func TestPassivePolicyReachesTheProxy(t *testing.T) {
	c := config.Default()
	c.Health.Passive = config.Passive{MaxFails: 5, FailDuration: 7 * time.Second}
	if got, want := proxySettings(c).Passive, (backend.Passive{MaxFails: 5, FailDuration: 7 * time.Second}); got != want {
		t.Fatalf("proxy settings carry %+v, want %+v", got, want)
	}
}

// Through the whole balancer: a failed dial always retries another backend
// at once, and the passive policy alone decides whether the failing backend
// is taken down.
func TestPassivePolicyThroughTheBalancer(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // dials are refused from now on
	for _, tc := range []struct {
		maxFails int
		wantUp   bool
	}{{0, true}, {2, false}} {
		t.Run(fmt.Sprintf("max_fails=%d", tc.maxFails), func(t *testing.T) {
			live := newBackend(t, "live")
			cfg := testConfig(t, "round_robin", live)
			cfg.Backends = append([]config.Backend{{ID: 7, Name: "dead", Address: deadAddr, Weight: 1}}, cfg.Backends...)
			one := 1
			cfg.Proxy.Retries = &one
			cfg.Health.Interval = time.Hour // only the passive policy acts
			cfg.Health.Passive = config.Passive{MaxFails: tc.maxFails, FailDuration: time.Minute}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			lb := startBalancer(t, cfg)
			for i := range 6 {
				if body, err := get(lb.Addr().String(), ""); err != nil || body != "live" {
					t.Fatalf("request %d: %q, %v; want every one served by live", i, body, err)
				}
			}
			var deadState backend.Snapshot
			for _, s := range lb.Snapshot().Backends {
				if s.Name == "dead" {
					deadState = s
				}
			}
			if deadState.ConnectFailures == 0 || deadState.Up != tc.wantUp {
				t.Fatalf("dead backend %+v, want up=%v after failed dials", deadState, tc.wantUp)
			}
		})
	}
}
