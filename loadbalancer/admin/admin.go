// Package admin serves the balancer's state over HTTP: Prometheus metrics at
// /metrics, a JSON snapshot at /status and a liveness answer at /health. Every
// figure is read from snapshots at request time, so scraping costs the proxy
// nothing.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lemonade-lb/lemonade/loadbalancer"
	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
)

// Source is what the admin server reads: *loadbalancer.Balancer.
type Source interface {
	Snapshot() loadbalancer.Snapshot
}

// Handler serves /metrics, /status and /health for src.
func Handler(src Source) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collector{src},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(src.Snapshot())
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"status":"ok"}`)
	})
	return mux
}

// Server is a running admin listener.
type Server struct {
	addr net.Addr
	done chan struct{}
}

// Start serves Handler(src) on address until ctx ends.
func Start(ctx context.Context, log *slog.Logger, address string, src Source) (*Server, error) {
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return nil, fmt.Errorf("admin: listen on %s: %w", address, err)
	}
	hs := &http.Server{Handler: Handler(src), ReadHeaderTimeout: 5 * time.Second}
	s := &Server{addr: ln.Addr(), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server failed", "address", address, "error", err)
		}
	}()
	context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
	})
	log.Info("admin listening", "address", ln.Addr().String(), "endpoints", "/metrics /status /health")
	return s, nil
}

// Addr is the address the admin server listens on.
func (s *Server) Addr() net.Addr { return s.addr }

// Wait blocks until the server has stopped.
func (s *Server) Wait() { <-s.done }

var (
	backendLabels = []string{"id", "backend", "address", "state"}
	descs         = map[string]*prometheus.Desc{}
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	d := prometheus.NewDesc("lemonade_"+name, help, labels, nil)
	descs[name] = d
	return d
}

var (
	dUp          = desc("backend_up", "1 if the backend passes its health checks.", backendLabels...)
	dWeight      = desc("backend_weight", "Configured weight.", backendLabels...)
	dActive      = desc("backend_active_connections", "Connections open to the backend now.", backendLabels...)
	dTotal       = desc("backend_connections_total", "Connections proxied to the backend.", backendLabels...)
	dFailures    = desc("backend_connect_failures_total", "Failed dials to the backend.", backendLabels...)
	dBytes       = desc("backend_bytes_total", "Bytes proxied, by direction (in = client to backend).", append(backendLabels, "direction")...)
	dLatency     = desc("backend_response_time_seconds", "Moving average of time to first byte.", backendLabels...)
	dLatencyDev  = desc("backend_response_time_stddev_seconds", "Moving standard deviation of time to first byte.", backendLabels...)
	dErrorRate   = desc("backend_error_rate", "Moving average of failed dials, 0 to 1.", backendLabels...)
	dTransitions = desc("backend_health_transitions_total", "Health state changes.", backendLabels...)
	dConnActive  = desc("connections_active", "Client connections open now.")
	dAccepted    = desc("connections_accepted_total", "Client connections accepted.")
	dRejected    = desc("connections_rejected_total", "Client connections closed because no backend could take them.")
	dAtCap       = desc("max_connections_wait_seconds_total", "Time the accept loop waited at proxy.max_connections.")
	dAborted     = desc("connections_aborted_total", "Client connections ended by a reset from either side, passed on as a reset.")
	dWaitedFDs   = desc("connections_waited_for_descriptors_total", "Clients kept waiting because the host had no descriptor for their backend connection.")
	dLogsDropped = desc("log_lines_dropped_total", "Data-path log lines dropped because the log sink was too slow.")
	dReloads     = desc("reloads_total", "Config reloads, by result.", "result")
	dChecks      = desc("health_checks_total", "Active health checks, by result.", "result")
	dInfo        = desc("info", "The running config: listen address and strategy.", "listen_address", "strategy")
)

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
	emit := func(b backend.Snapshot, state string) {
		l := []string{strconv.Itoa(b.ID), b.Name, b.Address, state}
		gauge(dUp, boolFloat(b.Up), l...)
		gauge(dWeight, float64(b.Weight), l...)
		gauge(dActive, float64(b.Active), l...)
		counter(dTotal, float64(b.Total), l...)
		counter(dFailures, float64(b.ConnectFailures), l...)
		counter(dBytes, float64(b.BytesIn), append(l, "in")...)
		counter(dBytes, float64(b.BytesOut), append(l, "out")...)
		gauge(dLatency, b.Latency.Seconds(), l...)
		gauge(dLatencyDev, b.LatencyStdDev.Seconds(), l...)
		gauge(dErrorRate, b.ErrorRate, l...)
		counter(dTransitions, float64(b.Transitions), l...)
	}
	for _, b := range s.Backends {
		emit(b, "active")
	}
	for _, b := range s.Draining {
		emit(b, "draining")
	}
	gauge(dConnActive, float64(s.Proxy.Active))
	counter(dAccepted, float64(s.Proxy.Accepted))
	counter(dRejected, float64(s.Proxy.NoBackend))
	counter(dAtCap, s.Proxy.AtCap.Seconds())
	counter(dAborted, float64(s.Proxy.Aborts))
	counter(dWaitedFDs, float64(s.Proxy.WaitedForDescriptors))
	counter(dLogsDropped, float64(s.Proxy.LogsDropped))
	counter(dReloads, float64(s.ReloadsOK), "ok")
	counter(dReloads, float64(s.ReloadsFailed), "error")
	counter(dChecks, float64(s.HealthChecks-s.HealthFailed), "pass")
	counter(dChecks, float64(s.HealthFailed), "fail")
	counter(dChecks, float64(s.HealthLocal), "local_failure")
	gauge(dInfo, 1, s.ListenAddress, s.Strategy)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
