package admin

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lemonade-lb/lemonade/loadbalancer"
	"github.com/lemonade-lb/lemonade/loadbalancer/accesslog"
	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
	"github.com/lemonade-lb/lemonade/loadbalancer/health"
	"github.com/lemonade-lb/lemonade/loadbalancer/proxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fixed loadbalancer.Snapshot

func (f fixed) Snapshot() loadbalancer.Snapshot { return loadbalancer.Snapshot(f) }

func sample() fixed {
	var ttfb, checks backend.Histogram
	for _, d := range []time.Duration{300 * time.Microsecond, 4 * time.Millisecond, 4 * time.Millisecond, 20 * time.Second} {
		ttfb.Observe(d)
	}
	checks.Observe(2 * time.Millisecond)
	return fixed{
		ListenAddress: "127.0.0.1:50501",
		Strategy:      "adaptive",
		Backends: []backend.Snapshot{
			{ID: 0, Name: "a", Address: "127.0.0.1:1", Weight: 2, Up: true, Active: 3, Total: 10, BytesIn: 100, BytesOut: 2000, Latency: 5 * time.Millisecond, LatencyStdDev: time.Millisecond, ResponseTime: ttfb.Snapshot()},
			{ID: 1, Name: "b", Address: "127.0.0.1:2", Weight: 1, ConnectFailures: 4, Transitions: 1},
		},
		Draining:      []backend.Snapshot{{ID: 2, Name: "old", Address: "127.0.0.1:3", Weight: 1, Up: true, Draining: true, Active: 1}},
		Proxy:         proxy.Stats{Active: 4, Accepted: 14, NoBackend: 2, AtCap: 1500 * time.Millisecond, Aborts: 7, WaitedForDescriptors: 8, LogsDropped: 9, Retries: 11, MaxConnections: 512, AcceptHeldBack: true},
		ReloadsOK:     5,
		ReloadsFailed: 1,
		AccessLog:     accesslog.Stats{Path: "/var/log/lemonade/access.log", Written: 21, Dropped: 22, Errors: 23},
		LastReload:    time.Unix(1700000000, 500_000_000),
		LastReloadOK:  false,
		HealthChecks:  20,
		HealthFailed:  3,
		HealthLocal:   6,
		HealthDurations: health.Durations{
			Pass: checks.Snapshot(),
		},
	}
}

func TestMetricsExposeTheSnapshot(t *testing.T) {
	SetBuildInfo(BuildInfo{Version: "v1.2.3", Commit: "abc123"})
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := Start(ctx, slog.New(slog.DiscardHandler), "127.0.0.1:0", sample())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); srv.Wait() }()
	base := "http://" + srv.Addr().String()
	body := fetch(t, base+"/metrics")
	for _, want := range []string{
		`lemonade_backend_up{address="127.0.0.1:1",backend="a",id="0"} 1`,
		`lemonade_backend_up{address="127.0.0.1:2",backend="b",id="1"} 0`,
		`lemonade_backend_draining{address="127.0.0.1:1",backend="a",id="0"} 0`,
		`lemonade_backend_draining{address="127.0.0.1:3",backend="old",id="2"} 1`,
		`lemonade_backend_active_connections{address="127.0.0.1:3",backend="old",id="2"} 1`,
		`lemonade_backend_bytes_total{address="127.0.0.1:1",backend="a",direction="out",id="0"} 2000`,
		`lemonade_backend_connect_failures_total{address="127.0.0.1:2",backend="b",id="1"} 4`,
		`lemonade_backend_response_time_ewma_seconds{address="127.0.0.1:1",backend="a",id="0"} 0.005`,
		`lemonade_backend_response_time_ewma_stddev_seconds{address="127.0.0.1:1",backend="a",id="0"} 0.001`,
		// The histogram: cumulative buckets, 0.3ms, 4ms twice and 20s.
		`lemonade_backend_response_time_seconds_bucket{address="127.0.0.1:1",backend="a",id="0",le="0.0005"} 1`,
		`lemonade_backend_response_time_seconds_bucket{address="127.0.0.1:1",backend="a",id="0",le="0.0025"} 1`,
		`lemonade_backend_response_time_seconds_bucket{address="127.0.0.1:1",backend="a",id="0",le="0.005"} 3`,
		`lemonade_backend_response_time_seconds_bucket{address="127.0.0.1:1",backend="a",id="0",le="10"} 3`,
		`lemonade_backend_response_time_seconds_bucket{address="127.0.0.1:1",backend="a",id="0",le="+Inf"} 4`,
		`lemonade_backend_response_time_seconds_sum{address="127.0.0.1:1",backend="a",id="0"} 20.0083`,
		`lemonade_backend_response_time_seconds_count{address="127.0.0.1:1",backend="a",id="0"} 4`,
		`lemonade_backend_response_time_seconds_count{address="127.0.0.1:2",backend="b",id="1"} 0`,
		`lemonade_connection_retries_total 11`,
		`lemonade_max_connections 512`,
		`lemonade_max_connections_waiting 1`,
		`lemonade_last_reload_timestamp_seconds 1.7000000005e+09`,
		`lemonade_last_reload_success 0`,
		`lemonade_health_check_duration_seconds_bucket{result="pass",le="0.0025"} 1`,
		`lemonade_health_check_duration_seconds_count{result="pass"} 1`,
		`lemonade_health_check_duration_seconds_count{result="fail"} 0`,
		`lemonade_health_check_duration_seconds_count{result="local_failure"} 0`,
		`lemonade_build_info{commit="abc123",goversion="` + runtime.Version() + `",version="v1.2.3"} 1`,
		`lemonade_connections_rejected_total 2`,
		`lemonade_connections_aborted_total 7`,
		`lemonade_connections_waited_for_descriptors_total 8`,
		`lemonade_log_lines_dropped_total 9`,
		`lemonade_access_log_lines_total 21`,
		`lemonade_access_log_dropped_total 22`,
		`lemonade_access_log_errors_total 23`,
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
	// A backend's state is a gauge, never a label: a label that changes
	// would split its counters into two series.
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "lemonade_backend_") && strings.Contains(line, "state=") {
			t.Errorf("per-backend series with a state label: %s", line)
		}
	}
	// Every metric the collector describes is documented in the one list.
	ops, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range descs {
		if !regexp.MustCompile("`lemonade_" + name + "[`{]").Match(ops) {
			t.Errorf("docs/operations.md does not list lemonade_%s", name)
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

// A backend removed and added back at the same id and address while its old
// self drains is one series: counts summed, state from the one in service.
// Two series with one label set would fail the whole scrape.
func TestMetricsMergeABackendAddedBackWhileItDrains(t *testing.T) {
	var old, cur backend.Histogram
	old.Observe(time.Millisecond)
	cur.Observe(time.Millisecond)
	src := fixed{
		ListenAddress: "127.0.0.1:50501",
		Strategy:      "round_robin",
		Backends:      []backend.Snapshot{{ID: 1, Name: "a", Address: "127.0.0.1:1", Weight: 3, Up: true, Active: 2, Total: 5, ResponseTime: cur.Snapshot()}},
		Draining:      []backend.Snapshot{{ID: 1, Name: "a", Address: "127.0.0.1:1", Weight: 1, Draining: true, Active: 1, Total: 7, ResponseTime: old.Snapshot()}},
	}
	rec := httptest.NewRecorder()
	Handler(src).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d %s", rec.Code, body)
	}
	for _, want := range []string{
		`lemonade_backend_active_connections{address="127.0.0.1:1",backend="a",id="1"} 3`,
		`lemonade_backend_connections_total{address="127.0.0.1:1",backend="a",id="1"} 12`,
		`lemonade_backend_response_time_seconds_count{address="127.0.0.1:1",backend="a",id="1"} 2`,
		`lemonade_backend_draining{address="127.0.0.1:1",backend="a",id="1"} 0`,
		`lemonade_backend_weight{address="127.0.0.1:1",backend="a",id="1"} 3`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// Before any config was applied there is no last reload to report.
func TestNoLastReloadBeforeTheFirst(t *testing.T) {
	rec := httptest.NewRecorder()
	Handler(fixed{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if body := rec.Body.String(); rec.Code != 200 || strings.Contains(body, "lemonade_last_reload") {
		t.Fatalf("/metrics: %d\n%s", rec.Code, body)
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
