// Package admin serves the balancer's state over HTTP: Prometheus metrics at
// /metrics, a JSON snapshot at /status and a liveness answer at /health. Every
// figure is read from snapshots at request time, so scraping costs the proxy
// nothing. For a *loadbalancer.Balancer (a Controller) it also serves the
// runtime API under /api/v1 (api.go): drain, disable, enable and reweigh a
// backend, read and replace the config.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lemonade-lb/lemonade/loadbalancer"
	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

// Source is what the admin server reads: *loadbalancer.Balancer.
type Source interface {
	// Snapshot returns the current state; it must not block the proxy.
	Snapshot() loadbalancer.Snapshot
}

// Handler serves /metrics, /status, /health and the /api/v1 routes for src.
// Errors are JSON ({"error": "..."}). When src is a Controller, its config's
// admin.token, read now, is required on every request but GET /health and
// the dashboard page (GET /, which holds no data).
func Handler(src Source) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collector{src},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /status", status(src))
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"status":"ok"}`)
	})
	registerAPI(mux, src)
	return dashboard(guard(tokenOf(src), jsonErrors(mux))) // GET /: the live dashboard (dashboard.go), served without the token
}

// Server is a running admin listener.
type Server struct {
	addr net.Addr
	done chan struct{}
}

// Start serves Handler(src) on address until ctx ends. It refuses an
// address that is not loopback when no token guards the API.
func Start(ctx context.Context, log *slog.Logger, address string, src Source) (*Server, error) {
	if tokenOf(src) == "" && !config.IsLoopback(address) {
		return nil, fmt.Errorf("admin: %s is not a loopback address and admin.token is not set: anyone who reaches it could change the balancer", address)
	}
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return nil, fmt.Errorf("admin: listen on %s: %w", address, err)
	}
	hs := &http.Server{Handler: Handler(src), ReadHeaderTimeout: 5 * time.Second}
	s := &Server{addr: ln.Addr(), done: make(chan struct{})}
	shutDown := make(chan struct{})
	go func() {
		defer close(s.done)
		err := hs.Serve(ln)
		if !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server failed", "address", address, "error", err)
			return
		}
		<-shutDown // Serve returns when Shutdown starts; its requests may still run
	}()
	context.AfterFunc(ctx, func() {
		defer close(shutDown)
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
	})
	log.Info("admin listening", "address", ln.Addr().String(), "endpoints", "/metrics /status /health /api/v1", "token", tokenOf(src) != "")
	return s, nil
}

// Addr is the address the admin server listens on.
func (s *Server) Addr() net.Addr { return s.addr }

// Wait blocks until the server has stopped.
func (s *Server) Wait() { <-s.done }

// backendLabels name a backend's series. Its state (up, draining) is a
// gauge of its own, never a label: a label that changes splits a counter.
var (
	backendLabels = []string{"id", "backend", "address"}
	descs         = map[string]*prometheus.Desc{}
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	d := prometheus.NewDesc("lemonade_"+name, help, labels, nil)
	descs[name] = d
	return d
}

var (
	dUp            = desc("backend_up", "1 if the backend passes its health checks.", backendLabels...)
	dDraining      = desc("backend_draining", "1 while the backend takes no new connections and its open ones finish.", backendLabels...)
	dWeight        = desc("backend_weight", "Configured weight.", backendLabels...)
	dActive        = desc("backend_active_connections", "Connections open to the backend now.", backendLabels...)
	dTotal         = desc("backend_connections_total", "Connections proxied to the backend.", backendLabels...)
	dFailures      = desc("backend_connect_failures_total", "Failed dials to the backend.", backendLabels...)
	dBytes         = desc("backend_bytes_total", "Bytes proxied, by direction (in = client to backend).", append(backendLabels, "direction")...)
	dTTFB          = desc("backend_response_time_seconds", "Time to first byte: from a client's first bytes to the backend's first bytes in reply.", backendLabels...)
	dLatency       = desc("backend_response_time_ewma_seconds", "Moving average of time to first byte (the first connect time until one is measured).", backendLabels...)
	dLatencyDev    = desc("backend_response_time_ewma_stddev_seconds", "Moving standard deviation of time to first byte.", backendLabels...)
	dErrorRate     = desc("backend_error_rate", "Moving average of failed dials, 0 to 1.", backendLabels...)
	dTransitions   = desc("backend_health_transitions_total", "Health state changes.", backendLabels...)
	dConnActive    = desc("connections_active", "Client connections open now.")
	dAccepted      = desc("connections_accepted_total", "Client connections accepted.")
	dRejected      = desc("connections_rejected_total", "Client connections closed because no backend could take them.")
	dRetries       = desc("connection_retries_total", "Dials that followed a failed dial of the same client connection, to the backend's next address or to another backend (proxy.retries).")
	dMaxConns      = desc("max_connections", "The cap on open client connections in force (proxy.max_connections); 0 = none.")
	dWaiting       = desc("max_connections_waiting", "1 while an accept is held back at proxy.max_connections: clients wait in the kernel backlog. How many is not knowable cheaply, so this is 0 or 1.")
	dAtCap         = desc("max_connections_wait_seconds_total", "Time the accept loop waited at proxy.max_connections.")
	dAborted       = desc("connections_aborted_total", "Client connections ended by a reset from either side, passed on as a reset.")
	dWaitedFDs     = desc("connections_waited_for_descriptors_total", "Clients kept waiting because the host had no descriptor for their backend connection.")
	dLogsDropped   = desc("log_lines_dropped_total", "Data-path log lines dropped because the log sink was too slow.")
	dAccessLines   = desc("access_log_lines_total", "Access log lines written.")
	dAccessDropped = desc("access_log_dropped_total", "Access log lines dropped: the writer was behind by accesslog.QueueSize lines, or the log was being turned off.")
	dAccessErrors  = desc("access_log_errors_total", "Access log writes and reopens that failed.")
	dReloads       = desc("reloads_total", "Config reloads, by result.", "result")
	dLastReload    = desc("last_reload_timestamp_seconds", "When the config was last applied (the start counts) or a reload failed, in Unix seconds.")
	dReloadOK      = desc("last_reload_success", "1 if the latest reload was applied, 0 if it failed.")
	dChecks        = desc("health_checks_total", "Active health checks, by result.", "result")
	dCheckTime     = desc("health_check_duration_seconds", "Duration of the active health checks, by result.", "result")
	dInfo          = desc("info", "The running config: listen address and strategy.", "listen_address", "strategy")
	dBuildInfo     = desc("build_info", "1, labelled with the version, commit and Go version of the build.", "version", "commit", "goversion")
)

// BuildInfo is the build lemonade_build_info reports.
type BuildInfo struct {
	Version, Commit string
}

var buildInfo atomic.Pointer[BuildInfo]

// SetBuildInfo sets the version and commit lemonade_build_info reports
// (the CLI's, stamped at link time); until it is called both are
// "unknown". The Go version is the runtime's.
func SetBuildInfo(b BuildInfo) { buildInfo.Store(&b) }

// collector turns a Snapshot into metrics at scrape time.
type collector struct{ src Source }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range descs {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Snapshot()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	histogram := func(d *prometheus.Desc, h backend.HistogramSnapshot, labels ...string) {
		buckets := make(map[float64]uint64, len(backend.HistogramBounds))
		var n uint64
		for i, bound := range backend.HistogramBounds {
			n += h.Counts[i]
			buckets[bound.Seconds()] = n
		}
		ch <- prometheus.MustNewConstHistogram(d, h.Count(), h.Sum.Seconds(), buckets, labels...)
	}
	for _, b := range s.Series() {
		l := []string{strconv.Itoa(b.ID), b.Name, b.Address}
		gauge(dUp, boolFloat(b.Up), l...)
		gauge(dDraining, boolFloat(b.Draining), l...)
		gauge(dWeight, float64(b.Weight), l...)
		gauge(dActive, float64(b.Active), l...)
		counter(dTotal, float64(b.Total), l...)
		counter(dFailures, float64(b.ConnectFailures), l...)
		counter(dBytes, float64(b.BytesIn), append(l, "in")...)
		counter(dBytes, float64(b.BytesOut), append(l, "out")...)
		histogram(dTTFB, b.ResponseTime, l...)
		gauge(dLatency, b.Latency.Seconds(), l...)
		gauge(dLatencyDev, b.LatencyStdDev.Seconds(), l...)
		gauge(dErrorRate, b.ErrorRate, l...)
		counter(dTransitions, float64(b.Transitions), l...)
	}
	gauge(dConnActive, float64(s.Proxy.Active))
	counter(dAccepted, float64(s.Proxy.Accepted))
	counter(dRejected, float64(s.Proxy.NoBackend))
	counter(dRetries, float64(s.Proxy.Retries))
	gauge(dMaxConns, float64(s.Proxy.MaxConnections))
	gauge(dWaiting, boolFloat(s.Proxy.AcceptHeldBack))
	counter(dAtCap, s.Proxy.AtCap.Seconds())
	counter(dAborted, float64(s.Proxy.Aborts))
	counter(dWaitedFDs, float64(s.Proxy.WaitedForDescriptors))
	counter(dLogsDropped, float64(s.Proxy.LogsDropped))
	counter(dAccessLines, float64(s.AccessLog.Written))
	counter(dAccessDropped, float64(s.AccessLog.Dropped))
	counter(dAccessErrors, float64(s.AccessLog.Errors))
	counter(dReloads, float64(s.ReloadsOK), "ok")
	counter(dReloads, float64(s.ReloadsFailed), "error")
	if !s.LastReload.IsZero() {
		gauge(dLastReload, float64(s.LastReload.UnixNano())/1e9)
		gauge(dReloadOK, boolFloat(s.LastReloadOK))
	}
	counter(dChecks, float64(s.HealthChecks-s.HealthFailed), "pass")
	counter(dChecks, float64(s.HealthFailed), "fail")
	counter(dChecks, float64(s.HealthLocal), "local_failure")
	histogram(dCheckTime, s.HealthDurations.Pass, "pass")
	histogram(dCheckTime, s.HealthDurations.Fail, "fail")
	histogram(dCheckTime, s.HealthDurations.LocalFailure, "local_failure")
	gauge(dInfo, 1, s.ListenAddress, s.Strategy)
	build := BuildInfo{Version: "unknown", Commit: "unknown"}
	if b := buildInfo.Load(); b != nil {
		build = *b
	}
	gauge(dBuildInfo, 1, build.Version, build.Commit, runtime.Version())
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
