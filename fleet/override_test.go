package fleet

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/fleet/etcdtest"
	"github.com/lemonade-lb/lemonade/loadbalancer"
	"github.com/lemonade-lb/lemonade/loadbalancer/config"
	"github.com/lemonade-lb/lemonade/observability/testnet"
)

// SetOverride changes one part of a fleet-wide override and keeps the
// rest; the zero override deletes the key; the watcher hands them over.
func TestSetOverride(t *testing.T) {
	srv := etcdtest.Start(t)
	k := Keys{Prefix: "/t"}
	rec, _ := watch(t, srv, k)
	cli := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	set := func(change func(*Override)) {
		t.Helper()
		if err := SetOverride(ctx, cli, k, DefaultPool, "b", change); err != nil {
			t.Fatal(err)
		}
	}
	set(func(o *Override) { o.State = loadbalancer.OverrideDrain })
	set(func(o *Override) { o.Weight = 3 })
	want := Override{State: loadbalancer.OverrideDrain, Weight: 3}
	testnet.WaitFor(t, "the watcher hands over drain and weight 3", func() bool { return rec.override("b") == want })
	set(func(o *Override) { *o = Override{} })
	testnet.WaitFor(t, "the override goes", func() bool { return rec.override("b") == Override{} })
	if resp, err := cli.Get(ctx, k.Override(DefaultPool, "b")); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("the zero override left its key: %v, %v", resp, err)
	}
	// A broken value is ignored by the watcher.
	srv.Put(k.Override(DefaultPool, "c"), `{"state":"sleep"}`)
	srv.Put(k.Override(DefaultPool, "d"), `{"weight":2}`)
	testnet.WaitFor(t, "d's override arrives, c's does not", func() bool { return rec.override("d").Weight == 2 })
	if o := rec.override("c"); o != (Override{}) {
		t.Errorf("a broken override was handed over: %+v", o)
	}
}

// BalancerSink applies the fleet's overrides to a running balancer by
// backend name, and to a backend that joins later.
func TestBalancerSinkAppliesOverrides(t *testing.T) {
	addr := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln.Addr().String()
	}
	path := filepath.Join(t.TempDir(), "lb.yaml")
	file := []byte(fmt.Sprintf("proxy: {listen_address: \"127.0.0.1:0\"}\nbackends: [{name: a, address: %q}]\n", addr()))
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.LoadDataWith(path, file, config.Fleet{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	b, err := loadbalancer.Start(ctx, quiet, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { stop(); <-b.Done() }()
	sink := NewBalancerSink(loadbalancer.NewSources(b, path, file, config.Fleet{}), b, quiet)
	state := func(name string) (string, int) {
		for _, s := range b.Snapshot().Backends {
			if s.Name == name {
				return s.Override, s.Weight
			}
		}
		return "missing", 0
	}

	if err := sink.SetFleetSettings("etcd /t/config", []byte("strategy: least_connections\n")); err != nil || b.Config().Strategy != "least_connections" {
		t.Fatalf("the fleet's settings through the sink: %v, strategy %s", err, b.Config().Strategy)
	}
	sink.SetFleetOverrides(map[string]Override{"a": {State: loadbalancer.OverrideDrain}})
	if o, _ := state("a"); o != loadbalancer.OverrideDrain {
		t.Fatalf("a's override %q; want drain", o)
	}
	sink.SetFleetOverrides(map[string]Override{"a": {Weight: 7}, "late": {State: loadbalancer.OverrideDisable}})
	if o, w := state("a"); o != loadbalancer.OverrideWeight || w != 7 {
		t.Fatalf("a: override %q weight %d; want the drain undone and weight 7", o, w)
	}
	// A backend that joins later gets its override as it joins.
	if err := sink.SetFleetBackends([]config.Backend{{ID: 1 << 30, Name: "late", Address: addr(), Weight: 1}}); err != nil {
		t.Fatal(err)
	}
	if o, _ := state("late"); o != loadbalancer.OverrideDisable {
		t.Fatalf("late's override %q; want disable", o)
	}
	// A backend replaced under its name (another address) gets the override again.
	if err := sink.SetFleetBackends([]config.Backend{{ID: 1 << 30, Name: "late", Address: addr(), Weight: 1}}); err != nil {
		t.Fatal(err)
	}
	if o, _ := state("late"); o != loadbalancer.OverrideDisable {
		t.Fatalf("late, replaced at another address: override %q; want disable again", o)
	}
	// A drain becomes a disable without passing through enable.
	sink.SetFleetOverrides(map[string]Override{"a": {State: loadbalancer.OverrideDrain}})
	sink.SetFleetOverrides(map[string]Override{"a": {State: loadbalancer.OverrideDisable}})
	if o, _ := state("a"); o != loadbalancer.OverrideDisable {
		t.Fatalf("a: override %q; want disable", o)
	}
	sink.SetFleetOverrides(map[string]Override{})
	if o, w := state("a"); o != "" || w != 1 {
		t.Fatalf("a: override %q weight %d after the fleet's went; want none and the config's 1", o, w)
	}
	if o, _ := state("late"); o != "" {
		t.Fatalf("late's override %q after the fleet's went", o)
	}
}
