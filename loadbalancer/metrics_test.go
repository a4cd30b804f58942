package loadbalancer

import (
	"errors"
	"net"
	"testing"
)

// The snapshot tells when the config last changed and whether that worked:
// the start is a load, a rejected reload is a failure (the old config
// runs on), and the next good one clears it.
func TestSnapshotRecordsTheLastReload(t *testing.T) {
	a := newBackend(t, "a")
	cfg := testConfig(t, "round_robin", a)
	lb := startBalancer(t, cfg)
	started := lb.Snapshot()
	if started.LastReload.IsZero() || !started.LastReloadOK {
		t.Fatalf("after the start: last reload %v, ok %v", started.LastReload, started.LastReloadOK)
	}

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	next := clone(cfg)
	next.Proxy.ListenAddress = taken.Addr().String()
	if lb.Apply(next) == nil {
		t.Fatal("a reload onto a taken address was applied")
	}
	failed := lb.Snapshot()
	if failed.LastReloadOK || failed.LastReload.Before(started.LastReload) || failed.ReloadsFailed != 1 {
		t.Fatalf("after a rejected reload: last reload %v (start %v), ok %v, failed %d", failed.LastReload, started.LastReload, failed.LastReloadOK, failed.ReloadsFailed)
	}

	if err := lb.Apply(clone(cfg)); err != nil {
		t.Fatal(err)
	}
	if s := lb.Snapshot(); !s.LastReloadOK || s.LastReload.Before(failed.LastReload) {
		t.Fatalf("after a good reload: last reload %v, ok %v", s.LastReload, s.LastReloadOK)
	}

	lb.ReloadFailed(errors.New("config.yaml: bad key")) // a file that did not load
	if s := lb.Snapshot(); s.LastReloadOK || s.LastError != "config.yaml: bad key" {
		t.Fatalf("after a file that did not load: ok %v, error %q", s.LastReloadOK, s.LastError)
	}
}

// Responses through the balancer fill the backend's response-time
// histogram, and the health checks theirs.
func TestSnapshotHistograms(t *testing.T) {
	a := newBackend(t, "a")
	lb := startBalancer(t, testConfig(t, "round_robin", a))
	for range 3 {
		if body, err := get(lb.Addr().String(), ""); err != nil || body != "a" {
			t.Fatalf("through the balancer: %q, %v", body, err)
		}
	}
	waitFor(t, "3 response times", func() bool { return lb.Snapshot().Backends[0].ResponseTime.Count() == 3 })
	waitFor(t, "a passing health check", func() bool { return lb.Snapshot().HealthDurations.Pass.Count() > 0 })
	s := lb.Snapshot()
	if s.Backends[0].ResponseTime.Sum <= 0 || s.HealthDurations.Fail.Count() != 0 {
		t.Fatalf("response times %+v, health check durations %+v", s.Backends[0].ResponseTime, s.HealthDurations)
	}
}
