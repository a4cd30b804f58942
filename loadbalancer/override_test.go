package loadbalancer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
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
	// A drain can be cut short by a disable.
	if _, err := lb.DrainBackend(0); err != nil {
		t.Fatal(err)
	}
	if s, err := lb.DisableBackend(0); err != nil || s.Override != OverrideDisable {
		t.Fatalf("disable of a drained backend: %+v %v", s, err)
	}
}

// The latest change wins: a file reload after an API apply replaces the
// API's config whole, and the operator's overrides outlive both.
func TestFileReloadAfterAnAPIApplyReplacesIt(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	path := filepath.Join(t.TempDir(), "lb.yaml")
	write := func(name string) {
		t.Helper()
		doc := fmt.Sprintf("proxy: {listen_address: \"127.0.0.1:0\"}\nhealth: {interval: 1h}\nbackends:\n  - {id: 0, name: %s, address: %q}\n  - {id: 1, name: b, address: %q}\n", name, a.addr, b.addr)
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("a")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	lb := startBalancer(t, cfg)
	hup := watchFile(t, lb, path)
	waitFor := func(what string, ok func(Snapshot) bool) Snapshot {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if s := lb.Snapshot(); ok(s) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s within 10s: %+v", what, lb.Snapshot())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// A SIGHUP reload first: the watcher has read the file.
	hup <- syscall.SIGHUP
	waitFor("SIGHUP reload", func(s Snapshot) bool { return s.LastReloadSource == SourceFile && s.ReloadsOK == 1 })

	fromAPI := clone(lb.Config())
	fromAPI.Strategy = "least_connections"
	if _, err := lb.ApplyFrom(SourceAPI, fromAPI); err != nil {
		t.Fatal(err)
	}
	if _, err := lb.DrainBackend(0); err != nil {
		t.Fatal(err)
	}
	if s := lb.Snapshot(); s.Strategy != "least_connections" || s.LastReloadSource != SourceAPI {
		t.Fatalf("after the API apply: %+v", s)
	}

	write("a-edited")
	s := waitFor("file reload", func(s Snapshot) bool { return s.LastReloadSource == SourceFile && s.ReloadsOK == 3 })
	if s.Strategy != "round_robin" || s.Backends[0].Name != "a-edited" {
		t.Fatalf("the file did not replace the API's config: %+v", s)
	}
	if s.Backends[0].Override != OverrideDrain || !s.Backends[0].Draining {
		t.Fatalf("the file reload undid the drain: %+v", s.Backends[0])
	}
}
