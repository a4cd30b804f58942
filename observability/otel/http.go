package otel

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/lemonade-lb/lemonade/observability/metrics"
)

// Names of a worker's request instruments. A collector's Prometheus exporter
// turns them into the names a worker's own /metrics uses
// (metrics.RequestsTotal, metrics.RequestDuration).
const (
	WorkerRequests        = "lemonade.worker.http.requests"
	WorkerRequestDuration = "lemonade.worker.http.request.duration"
)

// Attribute keys of a worker's spans (OpenTelemetry's HTTP semantic
// conventions) and of its metrics (the labels of its /metrics).
const (
	AttrMethod    = "http.request.method"
	AttrRoute     = "http.route"
	AttrStatus    = "http.response.status_code"
	AttrFramework = "lemonade.framework"
	LabelRoute    = "route"
	LabelCode     = "code"
)

// durationBuckets are the histogram's bounds in seconds, those of the
// worker's Prometheus histogram: 0.5 ms … ~65 s (a /work may wait 60 s).
var durationBuckets = func() []float64 {
	b := make([]float64, 18)
	for i, v := 0, 0.0005; i < len(b); i, v = i+1, v*2 {
		b[i] = v
	}
	return b
}()

// HTTP records a worker's requests: a span each, a count by route and status
// code, and a duration histogram by route. Its methods are safe for
// concurrent use.
type HTTP struct {
	tracer    trace.Tracer // nil: no spans
	requests  metric.Int64Counter
	duration  metric.Float64Histogram
	framework attribute.KeyValue
	// kinds caches what is derived from a (method, route, status): span
	// name, attributes and measurement options, so a request allocates
	// none of them. The keys are bounded: methods are canonical, routes
	// are the worker's few, statuses are HTTP's.
	kinds sync.Map // requestKind -> *requestAttrs
}

type requestKind struct {
	method, route string
	status        int
}

type requestAttrs struct {
	spanName  string
	spanAttrs []attribute.KeyValue
	count     metric.AddOption
	duration  metric.RecordOption
}

// NewHTTP creates the instruments on t for a worker of framework. A nil t
// gives a nil *HTTP, which the caller must not use: with nothing to export,
// nothing should be called.
func NewHTTP(t *Telemetry, framework string) (*HTTP, error) {
	if t == nil {
		return nil, nil
	}
	m := t.Meter()
	requests, err1 := m.Int64Counter(WorkerRequests,
		metric.WithUnit("{request}"),
		metric.WithDescription("HTTP requests served, by route and status code."))
	duration, err2 := m.Float64Histogram(WorkerRequestDuration,
		metric.WithUnit("s"),
		metric.WithDescription("Time from the start of the handler to its answer, by route."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	return &HTTP{
		tracer:    t.Tracer(),
		requests:  requests,
		duration:  duration,
		framework: attribute.String(AttrFramework, framework),
	}, nil
}

// ObserveRequest records one request, answered with status, that ran from
// start to end. method is canonical (an upper-case standard method, or
// "_OTHER" as the HTTP conventions say); route is the matched route, or
// metrics.OtherRoute for any other path.
func (h *HTTP) ObserveRequest(method, route string, status int, start, end time.Time) {
	a := h.attrs(requestKind{method, route, status})
	ctx := context.Background()
	h.requests.Add(ctx, 1, a.count)
	h.duration.Record(ctx, end.Sub(start).Seconds(), a.duration)
	if h.tracer == nil {
		return
	}
	_, span := h.tracer.Start(ctx, a.spanName,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(start),
		trace.WithAttributes(a.spanAttrs...))
	if status >= 500 { // a server span is an error only for 5xx
		span.SetStatus(codes.Error, "")
	}
	span.End(trace.WithTimestamp(end))
}

func (h *HTTP) attrs(k requestKind) *requestAttrs {
	if a, ok := h.kinds.Load(k); ok {
		return a.(*requestAttrs)
	}
	a := &requestAttrs{
		count:    metric.WithAttributeSet(attribute.NewSet(attribute.String(LabelRoute, k.route), attribute.String(LabelCode, strconv.Itoa(k.status)))),
		duration: metric.WithAttributeSet(attribute.NewSet(attribute.String(LabelRoute, k.route))),
	}
	// The conventions name a server span "METHOD ROUTE", or "METHOD" when
	// no route matched ("HTTP" for a method they do not know).
	a.spanName = k.method
	if k.method == "_OTHER" {
		a.spanName = "HTTP"
	}
	a.spanAttrs = []attribute.KeyValue{
		attribute.String(AttrMethod, k.method),
		attribute.Int(AttrStatus, k.status),
		h.framework,
	}
	if k.route != metrics.OtherRoute {
		a.spanName += " " + k.route
		a.spanAttrs = append(a.spanAttrs, attribute.String(AttrRoute, k.route))
	}
	v, _ := h.kinds.LoadOrStore(k, a)
	return v.(*requestAttrs)
}
