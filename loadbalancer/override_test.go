package loadbalancer

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

// A dry run reports exactly what the apply then does, overrides included.
func TestPlanIsWhatApplyDoes(t *testing.T) {
	a, b, c, d := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c"), newBackend(t, "d")
	lb := startBalancer(t, testConfig(t, "round_robin", a, b, c))
	if _, err := lb.DrainBackend(0); err != nil {
		t.Fatal(err)
	}
	if _, err := lb.SetBackendWeight(1, 9); err != nil {
		t.Fatal(err)
	}
	steps := []func(*config.Config){
		func(n *config.Config) { n.Backends[1].Weight = 2; n.Backends[2].Weight = 3; n.Backends[0].Name = "a2" },
		func(n *config.Config) { n.Backends[0].Address = d.addr; n.Strategy = "least_connections" }, // id 0 is a new backend
		func(n *config.Config) {
			n.Backends = n.Backends[:2]
			r := 1
			n.Proxy.Retries = &r
			n.Proxy.ListenAddress = freePort(t)
		},
		func(*config.Config) {},
	}
	for i, change := range steps {
		next := clone(lb.Config())
		change(next)
		if err := next.Validate(); err != nil {
			t.Fatal(err)
		}
		plan, err := lb.Plan(next)
		if err != nil {
			t.Fatal(err)
		}
		applied, err := lb.ApplyFrom(SourceAPI, next)
		if err != nil {
			t.Fatal(err)
		}
		plan.keep, plan.gone, applied.keep, applied.gone = nil, nil, nil, nil
		if !reflect.DeepEqual(plan, applied) {
			t.Fatalf("step %d: plan %+v\napplied %+v", i, plan, applied)
		}
		t.Logf("step %d: %s", i, strings.Join(applied.Summary(), "; "))
	}
	s := lb.Snapshot()
	if len(s.Backends) != 2 || s.Backends[0].Override != "" || s.Backends[1].Override != OverrideWeight || s.Backends[1].Weight != 9 {
		t.Fatalf("backends %+v", s.Backends)
	}
	if s.LastReloadSource != SourceAPI {
		t.Fatalf("last reload source %q", s.LastReloadSource)
	}
	// A reweigh the config makes is hidden by the override: no change reported.
	next := clone(lb.Config())
	next.Backends[1].Weight = 5
	if d, _ := lb.Plan(next); len(d.Reweighted) != 0 {
		t.Fatalf("reweighted %+v under an override", d.Reweighted)
	}
}

func TestOverridesAfterStopAreRefused(t *testing.T) {
	a := newBackend(t, "a")
	ctx, cancel := context.WithCancel(context.Background())
	lb, err := Start(ctx, quiet, testConfig(t, "round_robin", a))
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-lb.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("balancer did not stop")
	}
	if _, err := lb.DrainBackend(0); !errors.Is(err, ErrStopped) {
		t.Fatalf("drain after stop: %v", err)
	}
	if _, err := lb.Plan(lb.Config()); !errors.Is(err, ErrStopped) {
		t.Fatalf("plan after stop: %v", err)
	}
}

func TestOverrideErrors(t *testing.T) {
	lb := startBalancer(t, testConfig(t, "round_robin", newBackend(t, "a"), newBackend(t, "b")))
	if _, err := lb.EnableBackend(5); !errors.Is(err, ErrUnknownBackend) || !strings.Contains(err.Error(), "no backend has id 5 (ids: 0, 1)") {
		t.Fatalf("unknown id: %v", err)
	}
	for _, w := range []int{0, -1, 256} {
		if _, err := lb.SetBackendWeight(0, w); !errors.Is(err, ErrInvalidWeight) {
			t.Fatalf("weight %d: %v", w, err)
		}
	}
	if _, err := lb.DisableBackend(1); err != nil {
		t.Fatal(err)
	}
	if _, err := lb.DrainBackend(1); !errors.Is(err, ErrConflict) {
		t.Fatalf("drain of a disabled backend: %v", err)
	}
	if s, err := lb.DisableBackend(1); err != nil || s.Override != OverrideDisable {
		t.Fatalf("disable twice: %+v %v", s, err)
	}
}
