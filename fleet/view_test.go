package fleet

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/fleet/etcdtest"
	"github.com/lemonade-lb/lemonade/loadbalancer"
)

// Read returns the whole fleet as etcd holds it, and lists what does not parse.
func TestReadTheFleet(t *testing.T) {
	srv := etcdtest.Start(t)
	k := Keys{Prefix: "/t"}
	cli := srv.Client()
	register(t, srv, k, "a", "127.0.0.1:50011", DefaultTTL)
	srv.Put(k.Backend("blue", "b"), `{"address":"127.0.0.1:50012","weight":3,"framework":"gin"}`)
	srv.Put(k.Backend(DefaultPool, "broken"), `{"address":"nohost"}`)
	srv.Put(k.Override(DefaultPool, "a"), `{"state":"drain"}`)
	srv.Put(k.Override(DefaultPool, "x"), `{"state":"sleep"}`)
	srv.Put(k.Balancers()+"bad", `not json`)
	srv.Put(k.Config(), "strategy: adaptive\n")
	g, err := RegisterBalancer(cli, k, "127.0.0.1:50501@host-1", Balancer{Listen: "127.0.0.1:50501", Admin: "http://127.0.0.1:50500"}, DefaultTTL, 5*time.Second, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	defer g.Close(ctx)

	v, err := Read(ctx, cli, k)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Pools[DefaultPool]) != 1 || v.Pools[DefaultPool][0].Name != "a" || v.Pools["blue"][0].Weight != 3 || v.Pools["blue"][0].Framework != "gin" {
		t.Errorf("pools %+v", v.Pools)
	}
	if v.Overrides[DefaultPool]["a"].State != loadbalancer.OverrideDrain || v.Settings == nil || *v.Settings != "strategy: adaptive\n" {
		t.Errorf("overrides %+v, settings %v", v.Overrides, v.Settings)
	}
	if b := v.Balancers["127.0.0.1:50501@host-1"]; b.Admin != "http://127.0.0.1:50500" {
		t.Errorf("balancers %+v", v.Balancers)
	}
	if problems := strings.Join(v.Problems, "\n"); len(v.Problems) != 3 || !strings.Contains(problems, "broken") || !strings.Contains(problems, "sleep") || !strings.Contains(problems, "/t/balancers/bad") {
		t.Errorf("problems %q; want the broken backend, the bad override and the bad balancer", v.Problems)
	}
}

// Bad names are refused before anything is written.
func TestNamesAreChecked(t *testing.T) {
	srv := etcdtest.Start(t)
	k := Keys{Prefix: "/t"}
	cli := srv.Client()
	if _, err := Register(cli, k, "a/b", "w", Registration{Address: "127.0.0.1:1"}, DefaultTTL, time.Second, quiet); err == nil {
		t.Error("a pool name with a slash was taken")
	}
	if _, err := Register(cli, k, DefaultPool, "w x", Registration{Address: "127.0.0.1:1"}, DefaultTTL, time.Second, quiet); err == nil {
		t.Error("a backend name with a space was taken")
	}
	if _, err := RegisterBalancer(cli, k, "", Balancer{}, DefaultTTL, time.Second, quiet); err == nil {
		t.Error("an empty balancer id was taken")
	}
	if _, err := NewWatcher(cli, k, "", quiet); err == nil {
		t.Error("a watcher of an empty pool")
	}
	if err := SetOverride(context.Background(), cli, k, DefaultPool, "", func(*Override) {}); err == nil {
		t.Error("an override of an empty name")
	}
}
