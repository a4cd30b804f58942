package admin

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/lemonade-lb/lemonade/loadbalancer"
)

// fakeFleet is a balancer in a fleet: SetFleetOverride records the calls,
// or fails with fail.
type fakeFleet struct {
	*loadbalancer.Balancer
	mu    sync.Mutex
	calls []string
	fail  error
}

func (f *fakeFleet) SetFleetOverride(_ context.Context, name, action string, weight int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.calls = append(f.calls, name+" "+action+" "+strings.Repeat("I", weight))
	return nil
}

// ?scope=fleet records the change for the fleet, then makes it here; a
// balancer in no fleet refuses it, and a failed record changes nothing.
func TestScopeFleet(t *testing.T) {
	a := newEchoBackend(t, "a")
	cfg := lbConfig(t, "round_robin", a)
	plain := startAPI(t, cfg)
	if r := plain.call(t, "POST", "/api/v1/backends/0/drain?scope=fleet", "", ""); r.status != http.StatusBadRequest || !strings.Contains(r.errorText(t), "in no fleet") {
		t.Fatalf("scope=fleet without a fleet: %d %s", r.status, r.body)
	}
	if r := plain.call(t, "POST", "/api/v1/backends/0/drain?scope=planet", "", ""); r.status != http.StatusBadRequest || !strings.Contains(r.errorText(t), `scope "planet"`) {
		t.Fatalf("a bad scope: %d %s", r.status, r.body)
	}
	if s := plain.backend(t, 0); s.Override != "" {
		t.Fatalf("a refused change changed the backend: %+v", s)
	}

	cfg2 := lbConfig(t, "round_robin", newEchoBackend(t, "b"))
	ctx, cancel := context.WithCancel(context.Background())
	lb, err := loadbalancer.Start(ctx, quiet, cfg2)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeFleet{Balancer: lb}
	srv, err := Start(ctx, quiet, cfg2.Admin.ListenAddress, f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); srv.Wait(); <-lb.Done() })
	api := &adminAPI{lb: lb, base: "http://" + srv.Addr().String()}
	name := cfg2.Backends[0].Name

	if s := api.change(t, "POST", "/api/v1/backends/0/drain?scope=fleet", "", ""); s.Override != loadbalancer.OverrideDrain {
		t.Fatalf("after a fleet drain the backend here is %+v", s)
	}
	api.change(t, "PUT", "/api/v1/backends/0/weight?scope=fleet", "application/json", `{"weight": 3}`)
	api.change(t, "DELETE", "/api/v1/backends/0/override?scope=fleet", "", "")
	f.mu.Lock()
	got := strings.Join(f.calls, ", ")
	f.mu.Unlock()
	if want := name + " drain , " + name + " weight III, " + name + " enable "; got != want {
		t.Fatalf("fleet calls %q; want %q", got, want)
	}
	if r := api.call(t, "POST", "/api/v1/backends/9/drain?scope=fleet", "", ""); r.status != http.StatusNotFound {
		t.Fatalf("an unknown backend: %d %s", r.status, r.body)
	}
	f.mu.Lock()
	f.fail = errors.New("etcd is gone")
	f.mu.Unlock()
	r := api.call(t, "POST", "/api/v1/backends/0/disable?scope=fleet", "", "")
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.errorText(t), "etcd is gone") {
		t.Fatalf("a failed fleet record: %d %s", r.status, r.body)
	}
	if s := api.backend(t, 0); s.Override != "" {
		t.Fatalf("a failed fleet record changed the backend here: %+v", s)
	}
}
