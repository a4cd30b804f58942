// Package otel exports a Lemonade binary's metrics, and a worker's spans,
// over OTLP with the OpenTelemetry SDK.
//
// Setup builds the providers for one endpoint; with no endpoint it builds
// nothing and returns nil, so a binary that exports nothing pays nothing.
// Providers are returned, never installed as the process-wide globals: the
// demo runs several workers in one process, each with a service name of its
// own.
package otel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	otelapi "go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/lemonade-lb/lemonade/observability/otel/endpoint"
)

// ScopeName is the instrumentation scope of everything Lemonade records.
const ScopeName = "github.com/lemonade-lb/lemonade"

// Settings say where and how to export. The zero value exports nothing.
type Settings struct {
	// Endpoint is HOST:PORT (plain text), http://HOST:PORT[/PATH] (plain
	// text) or https://HOST[:PORT][/PATH] (TLS); see endpoint.Parse. Empty:
	// Setup does nothing.
	Endpoint string
	// Protocol is endpoint.GRPC (the default when empty) or
	// endpoint.HTTPProtobuf.
	Protocol string
	// ServiceName, ServiceVersion and ServiceInstanceID are the resource's
	// service.name, service.version and service.instance.id (which tells
	// two processes of one service apart: a collector's Prometheus exporter
	// makes it the instance label). OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES override them, as OpenTelemetry users expect.
	ServiceName       string
	ServiceVersion    string
	ServiceInstanceID string
	// Attributes are more resource attributes (lemonade.framework, for one).
	Attributes []attribute.KeyValue
	// Interval is how often metrics are exported. If zero, the SDK's
	// default is used: OTEL_METRIC_EXPORT_INTERVAL, else 60s.
	Interval time.Duration
	// Timeout bounds one export (metrics or spans). If zero, the SDK's
	// default is used: OTEL_METRIC_EXPORT_TIMEOUT, else 30s for metrics,
	// 10s for the exporters themselves.
	Timeout time.Duration
	// Traces also sets up span export (the workers); the balancer exports
	// metrics only.
	Traces bool
	// Logger, if not nil, receives export failures at warn level (they
	// otherwise go to the standard log package). It is installed as the
	// OpenTelemetry SDK's process-wide error handler.
	Logger *slog.Logger
}

// Telemetry holds the providers Setup built. A nil *Telemetry is valid: it
// exports nothing, its Meter and Tracer are nil and Shutdown does nothing.
type Telemetry struct {
	meters  *sdkmetric.MeterProvider
	tracers *sdktrace.TracerProvider // nil unless Settings.Traces
}

// Setup builds the exporters and providers s asks for; it returns nil, nil
// when s.Endpoint is empty. It does not connect: a collector that is down
// shows up as failed exports, logged, never as an error here. Its errors
// are about the settings and do not repeat the endpoint, so callers can say
// which setting it came from.
func Setup(ctx context.Context, s Settings) (*Telemetry, error) {
	if s.Endpoint == "" {
		return nil, nil
	}
	ep, err := endpoint.Parse(s.Endpoint, s.Protocol)
	if err != nil {
		return nil, err
	}
	res, err := newResource(ctx, s)
	if err != nil {
		return nil, err
	}
	if s.Logger != nil {
		log := s.Logger
		otelapi.SetErrorHandler(otelapi.ErrorHandlerFunc(func(err error) {
			if errors.Is(err, context.Canceled) {
				return // Shutdown stopped a periodic export: its own flush follows and reports
			}
			log.Warn("OpenTelemetry export failed", "endpoint", s.Endpoint, "error", err)
		}))
	}

	mexp, err := metricExporter(ctx, ep, s.Timeout)
	if err != nil {
		return nil, fmt.Errorf("OTLP metric exporter: %w", err)
	}
	var ropts []sdkmetric.PeriodicReaderOption
	if s.Interval > 0 {
		ropts = append(ropts, sdkmetric.WithInterval(s.Interval))
	}
	if s.Timeout > 0 {
		ropts = append(ropts, sdkmetric.WithTimeout(s.Timeout))
	}
	t := &Telemetry{meters: sdkmetric.NewMeterProvider(
		sdkmetric.WithResource(res),
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp, ropts...)),
	)}
	if s.Traces {
		texp, err := traceExporter(ctx, ep, s.Timeout)
		if err != nil {
			_ = t.meters.Shutdown(ctx)
			return nil, fmt.Errorf("OTLP trace exporter: %w", err)
		}
		var bopts []sdktrace.BatchSpanProcessorOption
		if s.Timeout > 0 {
			bopts = append(bopts, sdktrace.WithExportTimeout(s.Timeout))
		}
		t.tracers = sdktrace.NewTracerProvider(
			sdktrace.WithResource(res),
			sdktrace.WithBatcher(texp, bopts...), // a full queue drops spans, never blocks a request
		)
	}
	return t, nil
}

func newResource(ctx context.Context, s Settings) (*resource.Resource, error) {
	attrs := make([]attribute.KeyValue, 0, 3+len(s.Attributes))
	if s.ServiceName != "" {
		attrs = append(attrs, attribute.String("service.name", s.ServiceName))
	}
	if s.ServiceVersion != "" {
		attrs = append(attrs, attribute.String("service.version", s.ServiceVersion))
	}
	if s.ServiceInstanceID != "" {
		attrs = append(attrs, attribute.String("service.instance.id", s.ServiceInstanceID))
	}
	attrs = append(attrs, s.Attributes...)
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attrs...),
		resource.WithFromEnv(), // last: the environment overrides the above
	)
	if err != nil {
		return nil, fmt.Errorf("OpenTelemetry resource: %w", err)
	}
	return res, nil
}

func metricExporter(ctx context.Context, ep endpoint.Endpoint, timeout time.Duration) (sdkmetric.Exporter, error) {
	if ep.Protocol == endpoint.HTTPProtobuf {
		opts := []otlpmetrichttp.Option{otlpmetrichttp.WithEndpoint(ep.HostPort), otlpmetrichttp.WithURLPath(ep.Path + "/v1/metrics")}
		if ep.Insecure {
			opts = append(opts, otlpmetrichttp.WithInsecure())
		}
		if timeout > 0 {
			opts = append(opts, otlpmetrichttp.WithTimeout(timeout))
		}
		return otlpmetrichttp.New(ctx, opts...)
	}
	opts := []otlpmetricgrpc.Option{otlpmetricgrpc.WithEndpoint(ep.HostPort)}
	if ep.Insecure {
		opts = append(opts, otlpmetricgrpc.WithInsecure())
	}
	if timeout > 0 {
		opts = append(opts, otlpmetricgrpc.WithTimeout(timeout))
	}
	return otlpmetricgrpc.New(ctx, opts...)
}

func traceExporter(ctx context.Context, ep endpoint.Endpoint, timeout time.Duration) (sdktrace.SpanExporter, error) {
	if ep.Protocol == endpoint.HTTPProtobuf {
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(ep.HostPort), otlptracehttp.WithURLPath(ep.Path + "/v1/traces")}
		if ep.Insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		if timeout > 0 {
			opts = append(opts, otlptracehttp.WithTimeout(timeout))
		}
		return otlptracehttp.New(ctx, opts...)
	}
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(ep.HostPort)}
	if ep.Insecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	if timeout > 0 {
		opts = append(opts, otlptracegrpc.WithTimeout(timeout))
	}
	return otlptracegrpc.New(ctx, opts...)
}

// Meter returns the meter instruments are created on; nil for a nil
// Telemetry.
func (t *Telemetry) Meter() metric.Meter {
	if t == nil {
		return nil
	}
	return t.meters.Meter(ScopeName)
}

// Tracer returns the tracer spans are started on; nil for a nil Telemetry
// or one set up without Settings.Traces.
func (t *Telemetry) Tracer() trace.Tracer {
	if t == nil || t.tracers == nil {
		return nil
	}
	return t.tracers.Tracer(ScopeName)
}

// Shutdown exports what is left (a last collection of every metric, the
// spans still queued) and stops the exporters, within ctx. It is safe to
// call more than once; later calls do nothing.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	var errs []error
	// Spans first: their batch may be the larger, and the metric flush is
	// quick.
	if t.tracers != nil {
		if err := t.tracers.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("flush spans: %w", err))
		}
	}
	if err := t.meters.Shutdown(ctx); err != nil && !errors.Is(err, sdkmetric.ErrReaderShutdown) {
		errs = append(errs, fmt.Errorf("flush metrics: %w", err))
	}
	return errors.Join(errs...)
}
