// Package oteltest is an OTLP receiver for tests: a real gRPC server
// implementing the collector's metrics and trace services, or an HTTP server
// decoding OTLP/HTTP protobuf bodies, on a loopback port. It keeps what it
// receives and lets a test wait until that satisfies a condition.
package oteltest

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricpb "go.opentelemetry.io/proto/otlp/metrics/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// WaitTimeout bounds Receiver.Wait.
const WaitTimeout = 30 * time.Second

// Receiver keeps every export it receives. Its methods are safe for
// concurrent use.
type Receiver struct {
	// Endpoint and Protocol are what an exporter is given to reach it.
	Endpoint string
	Protocol string

	mu      sync.Mutex
	data    Data
	changed chan struct{} // closed and replaced on every export
}

func newReceiver(endpoint, protocol string) *Receiver {
	return &Receiver{Endpoint: endpoint, Protocol: protocol, changed: make(chan struct{})}
}

// GRPC starts a receiver speaking OTLP over gRPC on 127.0.0.1; it stops when
// the test ends.
func GRPC(t testing.TB) *Receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := newReceiver(ln.Addr().String(), "grpc")
	srv := grpc.NewServer()
	colmetricpb.RegisterMetricsServiceServer(srv, metricsService{r: r})
	coltracepb.RegisterTraceServiceServer(srv, traceService{r: r})
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); <-served })
	return r
}

// HTTP starts a receiver speaking OTLP/HTTP with protobuf bodies on
// 127.0.0.1, under base ("" or a path such as "/otlp"): it serves
// base/v1/metrics and base/v1/traces. It stops when the test ends.
func HTTP(t testing.TB, base string) *Receiver {
	t.Helper()
	var r *Receiver
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+base+"/v1/metrics", func(w http.ResponseWriter, req *http.Request) {
		var m colmetricpb.ExportMetricsServiceRequest
		if !decode(w, req, &m) {
			return
		}
		r.addMetrics(httpHeaders(req.Header), m.ResourceMetrics)
		encode(w, &colmetricpb.ExportMetricsServiceResponse{})
	})
	mux.HandleFunc("POST "+base+"/v1/traces", func(w http.ResponseWriter, req *http.Request) {
		var m coltracepb.ExportTraceServiceRequest
		if !decode(w, req, &m) {
			return
		}
		r.addSpans(httpHeaders(req.Header), m.ResourceSpans)
		encode(w, &coltracepb.ExportTraceServiceResponse{})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	r = newReceiver(srv.URL+base, "http/protobuf")
	return r
}

func decode(w http.ResponseWriter, req *http.Request, m proto.Message) bool {
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "Content-Type "+ct+" is not application/x-protobuf", http.StatusUnsupportedMediaType)
		return false
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return false
		}
		defer zr.Close()
		body = zr
	}
	b, err := io.ReadAll(body)
	if err == nil {
		err = proto.Unmarshal(b, m)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func encode(w http.ResponseWriter, m proto.Message) {
	b, err := proto.Marshal(m)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(b)
}

type metricsService struct {
	colmetricpb.UnimplementedMetricsServiceServer
	r *Receiver
}

func (s metricsService) Export(ctx context.Context, req *colmetricpb.ExportMetricsServiceRequest) (*colmetricpb.ExportMetricsServiceResponse, error) {
	s.r.addMetrics(grpcHeaders(ctx), req.ResourceMetrics)
	return &colmetricpb.ExportMetricsServiceResponse{}, nil
}

type traceService struct {
	coltracepb.UnimplementedTraceServiceServer
	r *Receiver
}

func (s traceService) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.r.addSpans(grpcHeaders(ctx), req.ResourceSpans)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func httpHeaders(h http.Header) map[string]string {
	m := make(map[string]string, len(h))
	for k, v := range h {
		m[strings.ToLower(k)] = strings.Join(v, ",")
	}
	return m
}

func grpcHeaders(ctx context.Context) map[string]string {
	md, _ := metadata.FromIncomingContext(ctx)
	m := make(map[string]string, len(md))
	for k, v := range md {
		m[k] = strings.Join(v, ",")
	}
	return m
}

func (r *Receiver) addMetrics(headers map[string]string, rms []*metricpb.ResourceMetrics) {
	var points []Point
	for _, rm := range rms {
		res := attrs(rm.GetResource().GetAttributes())
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				points = append(points, pointsOf(m, res)...)
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.data.Exports++
	r.data.Headers = headers
	r.data.Points = append(r.data.Points, points...)
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *Receiver) addSpans(headers map[string]string, rss []*tracepb.ResourceSpans) {
	var spans []Span
	for _, rs := range rss {
		res := attrs(rs.GetResource().GetAttributes())
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				spans = append(spans, Span{
					Name:       s.Name,
					Kind:       s.Kind,
					Attributes: attrs(s.Attributes),
					Resource:   res,
					Start:      time.Unix(0, int64(s.StartTimeUnixNano)),
					End:        time.Unix(0, int64(s.EndTimeUnixNano)),
					Error:      s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR,
				})
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.data.Exports++
	r.data.Headers = headers
	r.data.Spans = append(r.data.Spans, spans...)
	close(r.changed)
	r.changed = make(chan struct{})
}

// Data is everything a receiver got, in the order it arrived.
type Data struct {
	Exports int // export requests received, metrics and traces
	Points  []Point
	Spans   []Span
	// Headers are the request headers (gRPC metadata) of the latest export,
	// keys in lower case.
	Headers map[string]string
}

// Point is one data point of a metric.
type Point struct {
	Metric     string
	Unit       string
	Kind       string // "sum", "gauge" or "histogram"
	Monotonic  bool   // a monotonic sum: a counter
	Attributes map[string]string
	Resource   map[string]string
	Value      float64 // the sum or gauge value; a histogram's sum
	Count      uint64  // a histogram's count
}

// Span is one span received.
type Span struct {
	Name       string
	Kind       tracepb.Span_SpanKind
	Attributes map[string]string
	Resource   map[string]string
	Start, End time.Time
	Error      bool // status code ERROR
}

// Snapshot returns what the receiver has got so far.
func (r *Receiver) Snapshot() Data {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snapshot()
}

func (r *Receiver) snapshot() Data {
	d := r.data
	d.Points = d.Points[:len(d.Points):len(d.Points)]
	d.Spans = d.Spans[:len(d.Spans):len(d.Spans)]
	return d
}

// Wait returns what the receiver got once cond holds for it, checking after
// each export; it fails t if that takes longer than WaitTimeout. what says
// what is awaited, for the failure message.
func (r *Receiver) Wait(t testing.TB, what string, cond func(Data) bool) Data {
	t.Helper()
	deadline := time.NewTimer(WaitTimeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		d, changed := r.snapshot(), r.changed
		r.mu.Unlock()
		if cond(d) {
			return d
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("OTLP receiver at %s: no %s after %s; received:\n%s", r.Endpoint, what, WaitTimeout, d)
			return d
		}
	}
}

// Last returns the latest point of metric whose attributes include match
// (name=value pairs): with cumulative temporality, its current value.
func (d Data) Last(metric string, match ...string) (Point, bool) {
	for i := len(d.Points) - 1; i >= 0; i-- {
		p := d.Points[i]
		if p.Metric == metric && p.has(match) {
			return p, true
		}
	}
	return Point{}, false
}

// Value is the value of Last(metric, match...), or -1 if there is none.
func (d Data) Value(metric string, match ...string) float64 {
	if p, ok := d.Last(metric, match...); ok {
		return p.Value
	}
	return -1
}

// Names lists the metric names received, sorted.
func (d Data) Names() []string {
	seen := map[string]bool{}
	var names []string
	for _, p := range d.Points {
		if !seen[p.Metric] {
			seen[p.Metric] = true
			names = append(names, p.Metric)
		}
	}
	sort.Strings(names)
	return names
}

// SpansNamed returns the spans called name.
func (d Data) SpansNamed(name string) []Span {
	var out []Span
	for _, s := range d.Spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func (p Point) has(match []string) bool {
	for i := 0; i+1 < len(match); i += 2 {
		if v, ok := p.Attributes[match[i]]; !ok || v != match[i+1] {
			return false
		}
	}
	return true
}

// String summarises the data: the latest point of each series and the span
// names with their counts.
func (d Data) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d exports\n", d.Exports)
	last := map[string]Point{}
	var keys []string
	for _, p := range d.Points {
		k := p.Metric + fmt.Sprint(p.Attributes)
		if _, ok := last[k]; !ok {
			keys = append(keys, k)
		}
		last[k] = p
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := last[k]
		fmt.Fprintf(&sb, "  %s %v %s=%g", p.Metric, p.Attributes, p.Kind, p.Value)
		if p.Kind == "histogram" {
			fmt.Fprintf(&sb, " count=%d", p.Count)
		}
		sb.WriteByte('\n')
	}
	spans := map[string]int{}
	for _, s := range d.Spans {
		spans[s.Name]++
	}
	fmt.Fprintf(&sb, "  spans: %v\n", spans)
	return sb.String()
}

func pointsOf(m *metricpb.Metric, res map[string]string) []Point {
	var out []Point
	add := func(p Point, a []*commonpb.KeyValue) {
		p.Metric, p.Unit, p.Attributes, p.Resource = m.Name, m.Unit, attrs(a), res
		out = append(out, p)
	}
	switch d := m.Data.(type) {
	case *metricpb.Metric_Sum:
		for _, dp := range d.Sum.DataPoints {
			add(Point{Kind: "sum", Monotonic: d.Sum.IsMonotonic, Value: number(dp)}, dp.Attributes)
		}
	case *metricpb.Metric_Gauge:
		for _, dp := range d.Gauge.DataPoints {
			add(Point{Kind: "gauge", Value: number(dp)}, dp.Attributes)
		}
	case *metricpb.Metric_Histogram:
		for _, dp := range d.Histogram.DataPoints {
			add(Point{Kind: "histogram", Value: dp.GetSum(), Count: dp.Count}, dp.Attributes)
		}
	}
	return out
}

func number(dp *metricpb.NumberDataPoint) float64 {
	switch v := dp.Value.(type) {
	case *metricpb.NumberDataPoint_AsInt:
		return float64(v.AsInt)
	case *metricpb.NumberDataPoint_AsDouble:
		return v.AsDouble
	}
	return 0
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		v := kv.GetValue()
		switch x := v.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.Key] = x.StringValue
		case *commonpb.AnyValue_IntValue:
			m[kv.Key] = strconv.FormatInt(x.IntValue, 10)
		case *commonpb.AnyValue_BoolValue:
			m[kv.Key] = strconv.FormatBool(x.BoolValue)
		case *commonpb.AnyValue_DoubleValue:
			m[kv.Key] = strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
		default:
			m[kv.Key] = v.String()
		}
	}
	return m
}
