package admin

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lemonade-lb/lemonade/loadbalancer"
	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
	"github.com/lemonade-lb/lemonade/loadbalancer/proxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fixed loadbalancer.Snapshot

func (f fixed) Snapshot() loadbalancer.Snapshot { return loadbalancer.Snapshot(f) }

func sample() fixed {
	return fixed{
		ListenAddress: "127.0.0.1:50501",
		Strategy:      "adaptive",
		Backends: []backend.Snapshot{
			{ID: 0, Name: "a", Address: "127.0.0.1:1", Weight: 2, Up: true, Active: 3, Total: 10, BytesIn: 100, BytesOut: 2000, Latency: 5 * time.Millisecond},
			{ID: 1, Name: "b", Address: "127.0.0.1:2", Weight: 1, ConnectFailures: 4, Transitions: 1},
		},
		Draining:      []backend.Snapshot{{ID: 2, Name: "old", Address: "127.0.0.1:3", Weight: 1, Up: true, Draining: true, Active: 1}},
		Proxy:         proxy.Stats{Active: 4, Accepted: 14, NoBackend: 2, AtCap: 1500 * time.Millisecond, Aborts: 7, WaitedForDescriptors: 8, LogsDropped: 9},
		ReloadsOK:     5,
		ReloadsFailed: 1,
		HealthChecks:  20,
		HealthFailed:  3,
		HealthLocal:   6,
	}
}

func TestMetricsExposeTheSnapshot(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := Start(ctx, slog.New(slog.DiscardHandler), "127.0.0.1:0", sample())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); srv.Wait() }()
	base := "http://" + srv.Addr().String()
	body := fetch(t, base+"/metrics")
	for _, want := range []string{
		`lemonade_backend_up{address="127.0.0.1:1",backend="a",id="0",state="active"} 1`,
		`lemonade_backend_up{address="127.0.0.1:2",backend="b",id="1",state="active"} 0`,
		`lemonade_backend_active_connections{address="127.0.0.1:3",backend="old",id="2",state="draining"} 1`,
		`lemonade_backend_bytes_total{address="127.0.0.1:1",backend="a",direction="out",id="0",state="active"} 2000`,
		`lemonade_backend_connect_failures_total{address="127.0.0.1:2",backend="b",id="1",state="active"} 4`,
		`lemonade_backend_response_time_seconds{address="127.0.0.1:1",backend="a",id="0",state="active"} 0.005`,
		`lemonade_connections_rejected_total 2`,
		`lemonade_connections_aborted_total 7`,
		`lemonade_connections_waited_for_descriptors_total 8`,
		`lemonade_log_lines_dropped_total 9`,
		`lemonade_health_checks_total{result="local_failure"} 6`,
		`lemonade_max_connections_wait_seconds_total 1.5`,
		`lemonade_reloads_total{result="error"} 1`,
		`lemonade_reloads_total{result="ok"} 5`,
		`lemonade_health_checks_total{result="fail"} 3`,
		`lemonade_info{listen_address="127.0.0.1:50501",strategy="adaptive"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	var s loadbalancer.Snapshot
	if err := json.Unmarshal([]byte(fetch(t, base+"/status")), &s); err != nil {
		t.Fatal(err)
	}
	if s.Strategy != "adaptive" || len(s.Backends) != 2 || s.Backends[0].Active != 3 || len(s.Draining) != 1 {
		t.Fatalf("/status %+v", s)
	}
	if got := fetch(t, base+"/health"); !strings.Contains(got, `"ok"`) {
		t.Fatalf("/health %q", got)
	}
}

func TestStartNamesATakenAddress(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := Start(ctx, slog.New(slog.DiscardHandler), "127.0.0.1:0", sample())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); srv.Wait() }()
	_, err = Start(ctx, slog.New(slog.DiscardHandler), srv.Addr().String(), sample())
	if err == nil || !strings.Contains(err.Error(), srv.Addr().String()) {
		t.Fatalf("error %v should name the taken address", err)
	}
}

func fetch(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d, %v", url, resp.StatusCode, err)
	}
	return string(b)
}
