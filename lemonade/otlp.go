package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/lemonade-lb/lemonade/loadbalancer"
	"github.com/lemonade-lb/lemonade/observability/otel"
	"github.com/lemonade-lb/lemonade/observability/otel/endpoint"
)

// The balancer's OTLP metric names. A collector's Prometheus exporter turns
// them into the names of the balancer's own /metrics: dots become
// underscores, counters get _total and seconds _seconds
// (lemonade.backend.connections -> lemonade_backend_connections_total).
// Per-backend ones carry the attributes id, backend and address, the labels
// of /metrics.
const (
	otlpBackendUp          = "lemonade.backend.up"
	otlpBackendDraining    = "lemonade.backend.draining"
	otlpBackendWeight      = "lemonade.backend.weight"
	otlpBackendActive      = "lemonade.backend.active_connections"
	otlpBackendConnections = "lemonade.backend.connections"
	otlpBackendFailures    = "lemonade.backend.connect_failures"
	otlpBackendBytes       = "lemonade.backend.bytes" // attribute direction: in (client to backend) or out
	otlpBackendEWMA        = "lemonade.backend.response_time.ewma"
	otlpConnActive         = "lemonade.connections.active"
	otlpConnAccepted       = "lemonade.connections.accepted"
	otlpConnRejected       = "lemonade.connections.rejected"
	otlpConnAborted        = "lemonade.connections.aborted"
	otlpRetries            = "lemonade.connection.retries"
	otlpReloads            = "lemonade.reloads" // attribute result: ok or error
)

// otlpFlushTimeout bounds the last export at shutdown when no export
// timeout is configured (the workers).
const otlpFlushTimeout = 5 * time.Second

// snapshotter is what the balancer's instruments read: *loadbalancer.Balancer.
type snapshotter interface {
	Snapshot() loadbalancer.Snapshot
}

// balancerInstruments registers the balancer's figures on m as observable
// instruments. One callback reads src.Snapshot() once per collection (every
// metrics.interval), so the proxy pays nothing between exports: its counters
// are the atomics /metrics reads too.
func balancerInstruments(m metric.Meter, src snapshotter) error {
	var errs []error
	i64gauge := func(name, desc string) metric.Int64ObservableGauge {
		g, err := m.Int64ObservableGauge(name, metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	i64counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, err := m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	i64updown := func(name, unit, desc string) metric.Int64ObservableUpDownCounter {
		c, err := m.Int64ObservableUpDownCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	var (
		up          = i64gauge(otlpBackendUp, "1 if the backend passes its health checks.")
		draining    = i64gauge(otlpBackendDraining, "1 while the backend takes no new connections and its open ones finish.")
		weight      = i64gauge(otlpBackendWeight, "Weight in force.")
		active      = i64updown(otlpBackendActive, "{connection}", "Connections open to the backend now.")
		connections = i64counter(otlpBackendConnections, "{connection}", "Connections proxied to the backend.")
		failures    = i64counter(otlpBackendFailures, "{dial}", "Failed dials to the backend.")
		bytes       = i64counter(otlpBackendBytes, "By", "Bytes proxied, by direction (in = client to backend).")
		connActive  = i64updown(otlpConnActive, "{connection}", "Client connections open now.")
		accepted    = i64counter(otlpConnAccepted, "{connection}", "Client connections accepted.")
		rejected    = i64counter(otlpConnRejected, "{connection}", "Client connections closed because no backend could take them.")
		aborted     = i64counter(otlpConnAborted, "{connection}", "Client connections ended by a reset from either side, passed on as a reset.")
		retries     = i64counter(otlpRetries, "{dial}", "Dials that followed a failed dial of the same client connection.")
		reloads     = i64counter(otlpReloads, "{reload}", "Config reloads, by result.")
	)
	ewma, err := m.Float64ObservableGauge(otlpBackendEWMA, metric.WithUnit("s"),
		metric.WithDescription("Moving average of time to first byte (the first connect time until one is measured)."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var (
		dirIn     = attribute.String("direction", "in")
		dirOut    = attribute.String("direction", "out")
		reloadOK  = metric.WithAttributes(attribute.String("result", "ok"))
		reloadErr = metric.WithAttributes(attribute.String("result", "error"))
	)
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := src.Snapshot()
		for _, b := range s.Series() {
			id := []attribute.KeyValue{attribute.String("id", strconv.Itoa(b.ID)), attribute.String("backend", b.Name), attribute.String("address", b.Address)}
			attrs := metric.WithAttributeSet(attribute.NewSet(id...))
			o.ObserveInt64(up, boolInt(b.Up), attrs)
			o.ObserveInt64(draining, boolInt(b.Draining), attrs)
			o.ObserveInt64(weight, int64(b.Weight), attrs)
			o.ObserveInt64(active, b.Active, attrs)
			o.ObserveInt64(connections, int64(b.Total), attrs)
			o.ObserveInt64(failures, int64(b.ConnectFailures), attrs)
			o.ObserveInt64(bytes, int64(b.BytesIn), metric.WithAttributeSet(attribute.NewSet(append(id, dirIn)...)))
			o.ObserveInt64(bytes, int64(b.BytesOut), metric.WithAttributeSet(attribute.NewSet(append(id, dirOut)...)))
			o.ObserveFloat64(ewma, b.Latency.Seconds(), attrs)
		}
		o.ObserveInt64(connActive, s.Proxy.Active)
		o.ObserveInt64(accepted, int64(s.Proxy.Accepted))
		o.ObserveInt64(rejected, int64(s.Proxy.NoBackend))
		o.ObserveInt64(aborted, int64(s.Proxy.Aborts))
		o.ObserveInt64(retries, int64(s.Proxy.Retries))
		o.ObserveInt64(reloads, int64(s.ReloadsOK), reloadOK)
		o.ObserveInt64(reloads, int64(s.ReloadsFailed), reloadErr)
		return nil
	}, up, draining, weight, active, connections, failures, bytes, ewma, connActive, accepted, rejected, aborted, retries, reloads)
	return err
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// flushOTLP exports what is left and stops the exporters within timeout
// (otlpFlushTimeout if 0), logging a failure: the process is ending, and a
// collector that is down must not hold it up for longer.
func flushOTLP(log *slog.Logger, tel *otel.Telemetry, timeout time.Duration) {
	if tel == nil {
		return
	}
	if timeout <= 0 {
		timeout = otlpFlushTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		log.Warn("OpenTelemetry: the last export failed", "error", err)
	}
}

// instanceID is the service.instance.id of the process listening on addr:
// the host's name and that address.
func instanceID(addr string) string {
	host, err := os.Hostname()
	if err != nil {
		host = "localhost"
	}
	return host + "/" + addr
}

// protocolName is the protocol in force: empty means gRPC.
func protocolName(p string) string {
	if p == "" {
		return endpoint.GRPC
	}
	return p
}
