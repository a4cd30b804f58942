package servicetest

import (
	"sync"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/observability/metrics"
	"github.com/lemonade-lb/lemonade/service"
)

// Observed is one call of a service.RequestObserver.
type Observed struct {
	Method, Route string
	Status        int
	Start, End    time.Time
}

// Recorder is a service.RequestObserver that keeps every call, for tests.
type Recorder struct {
	mu      sync.Mutex
	calls   []Observed
	changed chan struct{} // closed and replaced on every call
}

var _ service.RequestObserver = (*Recorder)(nil)

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{changed: make(chan struct{})} }

// ObserveRequest implements service.RequestObserver.
func (r *Recorder) ObserveRequest(method, route string, status int, start, end time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, Observed{method, route, status, start, end})
	close(r.changed)
	r.changed = make(chan struct{})
}

// Wait returns the calls once there are at least n, failing t after
// stopTimeout.
func (r *Recorder) Wait(t testing.TB, n int) []Observed {
	t.Helper()
	deadline := time.NewTimer(stopTimeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		calls, changed := append([]Observed(nil), r.calls...), r.changed
		r.mu.Unlock()
		if len(calls) >= n {
			return calls
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("%d requests observed after %s, want %d: %+v", len(calls), stopTimeout, n, calls)
		}
	}
}

// Observer checks that serve tells the config's Observer of every request,
// matched or not, with the canonical method, the route and the status it
// answered with: what the OTLP export turns into spans and metrics.
func Observer(t *testing.T, serve ServeFunc) {
	rec := NewRecorder()
	cfg := Config("observed")
	cfg.Observer = rec
	c := newClient(t, Start(t, cfg, serve))
	for i, r := range []struct {
		method, path, route string
		status              int
	}{
		{"GET", "/work?delay=0", service.RouteWork, 200},
		{"HEAD", "/health", service.RouteHealth, 200},
		{"GET", "/metrics", service.RouteMetrics, 200},
		{"GET", "/work?delay=abc", service.RouteWork, 400},
		{"POST", "/work", service.RouteWork, 405},
		{"DELETE", "/nope", metrics.OtherRoute, 404},
		{"OPTIONS", "/health", service.RouteHealth, 405},
	} {
		before := time.Now()
		if got := c.do(r.method, r.path); got.status != r.status {
			t.Fatalf("%s %s answered %d, want %d", r.method, r.path, got.status, r.status)
		}
		calls := rec.Wait(t, i+1)
		if len(calls) != i+1 {
			t.Fatalf("after %d requests, %d observed: %+v", i+1, len(calls), calls)
		}
		want := service.CanonicalMethod(r.method)
		if got := calls[i]; got.Method != want || got.Route != r.route || got.Status != r.status ||
			got.Start.Before(before) || got.End.Before(got.Start) {
			t.Errorf("%s %s observed as %+v; want %s %s %d, started after %v", r.method, r.path, got, want, r.route, r.status, before)
		}
	}
}
