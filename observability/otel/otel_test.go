package otel_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"go.uber.org/goleak"

	"github.com/lemonade-lb/lemonade/observability/metrics"
	"github.com/lemonade-lb/lemonade/observability/otel"
	"github.com/lemonade-lb/lemonade/observability/otel/oteltest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSetupWithoutEndpointBuildsNothing(t *testing.T) {
	tel, err := otel.Setup(context.Background(), otel.Settings{Protocol: "grpc", ServiceName: "x", Traces: true})
	if tel != nil || err != nil {
		t.Fatalf("Setup without an endpoint = %v, %v; want nil, nil", tel, err)
	}
	if tel.Meter() != nil || tel.Tracer() != nil || tel.Shutdown(context.Background()) != nil {
		t.Fatal("a nil *Telemetry must give nil instruments and shut down quietly")
	}
	h, err := otel.NewHTTP(tel, "nethttp")
	if h != nil || err != nil {
		t.Fatalf("NewHTTP(nil) = %v, %v; want nil, nil", h, err)
	}
}

func TestSetupRefusesBadSettings(t *testing.T) {
	for _, tc := range []struct{ endpoint, protocol, want string }{
		{"localhost", "grpc", "want HOST:PORT"},
		{"localhost:4317", "http", `unknown protocol "http"`},
		{"ftp://localhost:4317", "grpc", `scheme "ftp"`},
		{"http://localhost:4317/v1", "grpc", "path"},
	} {
		tel, err := otel.Setup(context.Background(), otel.Settings{Endpoint: tc.endpoint, Protocol: tc.protocol})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Setup(%q, %q) = %v; want an error containing %q", tc.endpoint, tc.protocol, err, tc.want)
		}
		if tel != nil {
			t.Errorf("Setup(%q, %q) returned providers with its error", tc.endpoint, tc.protocol)
		}
	}
}

// receivers starts one real receiver of each kind: gRPC, and HTTP with and
// without a base path.
func receivers(t *testing.T) map[string]*oteltest.Receiver {
	return map[string]*oteltest.Receiver{
		"grpc":               oteltest.GRPC(t),
		"http/protobuf":      oteltest.HTTP(t, ""),
		"http/protobuf+path": oteltest.HTTP(t, "/otlp"),
	}
}

// Every request becomes a span and is counted; Shutdown sends what the
// periodic reader (an hour away) has not.
func TestWorkerRequestsExportedAtShutdown(t *testing.T) {
	for name, rcv := range receivers(t) {
		t.Run(name, func(t *testing.T) {
			tel, err := otel.Setup(context.Background(), otel.Settings{
				Endpoint:       rcv.Endpoint,
				Protocol:       rcv.Protocol,
				ServiceName:    "worker-7",
				ServiceVersion: "v1.2.3",
				Attributes:     []attribute.KeyValue{attribute.String(otel.AttrFramework, "gin")},
				Interval:       time.Hour,
				Timeout:        5 * time.Second,
				Traces:         true,
			})
			if err != nil {
				t.Fatal(err)
			}
			h, err := otel.NewHTTP(tel, "gin")
			if err != nil {
				t.Fatal(err)
			}
			const works, misses = 25, 3
			start := time.Now()
			for i := range works {
				h.ObserveRequest("GET", "/work", 200, start, start.Add(time.Duration(i+1)*time.Millisecond))
			}
			for range misses {
				h.ObserveRequest("GET", metrics.OtherRoute, 404, start, start)
			}
			h.ObserveRequest("_OTHER", "/health", 405, start, start)
			h.ObserveRequest("HEAD", "/health", 500, start, start)
			if got := rcv.Snapshot(); got.Exports != 0 {
				t.Fatalf("exported before Shutdown with an hour's interval:\n%s", got)
			}
			if err := tel.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := tel.Shutdown(context.Background()); err != nil {
				t.Fatalf("second Shutdown: %v", err)
			}
			d := rcv.Snapshot() // Shutdown returned: the exports are in

			spans := d.SpansNamed("GET /work")
			if len(spans) != works {
				t.Fatalf("%d spans named GET /work, want %d:\n%s", len(spans), works, d)
			}
			s := spans[0]
			wantAttrs := map[string]string{otel.AttrMethod: "GET", otel.AttrRoute: "/work", otel.AttrStatus: "200", otel.AttrFramework: "gin"}
			for k, v := range wantAttrs {
				if s.Attributes[k] != v {
					t.Errorf("span attribute %s = %q, want %q (all: %v)", k, s.Attributes[k], v, s.Attributes)
				}
			}
			if s.Kind != tracepb.Span_SPAN_KIND_SERVER || s.Error {
				t.Errorf("span kind %v error %v; want a server span without error", s.Kind, s.Error)
			}
			if !s.Start.Equal(start) || s.End.Sub(s.Start) != time.Millisecond {
				t.Errorf("span from %v to %v; want the request's own times", s.Start, s.End)
			}
			for k, v := range map[string]string{"service.name": "worker-7", "service.version": "v1.2.3", otel.AttrFramework: "gin"} {
				if s.Resource[k] != v {
					t.Errorf("resource %s = %q, want %q (all: %v)", k, s.Resource[k], v, s.Resource)
				}
			}
			other := d.SpansNamed("GET")
			if len(other) != misses || other[0].Attributes[otel.AttrRoute] != "" || other[0].Attributes[otel.AttrStatus] != "404" {
				t.Errorf("unmatched paths: spans %+v; want %d named GET without a route", other, misses)
			}
			if n := len(d.SpansNamed("HTTP /health")); n != 1 {
				t.Errorf("%d spans named HTTP /health for an unknown method, want 1", n)
			}
			if errs := d.SpansNamed("HEAD /health"); len(errs) != 1 || !errs[0].Error {
				t.Errorf("a 500 must be an error span: %+v", errs)
			}

			if v := d.Value(otel.WorkerRequests, "route", "/work", "code", "200"); v != works {
				t.Errorf("%s{route=/work,code=200} = %v, want %d", otel.WorkerRequests, v, works)
			}
			if v := d.Value(otel.WorkerRequests, "route", metrics.OtherRoute, "code", "404"); v != misses {
				t.Errorf("%s{route=other,code=404} = %v, want %d", otel.WorkerRequests, v, misses)
			}
			p, ok := d.Last(otel.WorkerRequestDuration, "route", "/work")
			wantSum := float64(works*(works+1)/2) / 1000
			if !ok || p.Kind != "histogram" || p.Count != works || p.Unit != "s" || p.Value < wantSum-1e-9 || p.Value > wantSum+1e-9 {
				t.Errorf("%s{route=/work} = %+v; want a histogram in s of %d requests summing %gs", otel.WorkerRequestDuration, p, works, wantSum)
			}
		})
	}
}

// With a short interval, metrics arrive without a shutdown. The standard
// OTEL_* variables the exporters read still apply: headers (credentials
// for a hosted collector), resource attributes.
func TestPeriodicExport(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20s3cret")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test,service.instance.id=from-env")
	rcv := oteltest.GRPC(t)
	tel, err := otel.Setup(context.Background(), otel.Settings{Endpoint: rcv.Endpoint, ServiceName: "lb", ServiceInstanceID: "host/addr", Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	if tel.Tracer() != nil {
		t.Error("a tracer without Settings.Traces")
	}
	h, err := otel.NewHTTP(tel, "echo")
	if err != nil {
		t.Fatal(err)
	}
	h.ObserveRequest("GET", "/health", 200, time.Now(), time.Now()) // no tracer: metrics only
	d := rcv.Wait(t, "request count 1", func(d oteltest.Data) bool {
		return d.Value(otel.WorkerRequests, "route", "/health") == 1
	})
	if got := d.Headers["authorization"]; got != "Bearer s3cret" {
		t.Errorf("authorization header %q; want OTEL_EXPORTER_OTLP_HEADERS's", got)
	}
	p, _ := d.Last(otel.WorkerRequests)
	if p.Resource["deployment.environment.name"] != "test" || p.Resource["service.instance.id"] != "from-env" || p.Resource["service.name"] != "lb" {
		t.Errorf("resource %v; want OTEL_RESOURCE_ATTRIBUTES over the settings", p.Resource)
	}
	h.ObserveRequest("GET", "/health", 200, time.Now(), time.Now())
	rcv.Wait(t, "request count 2", func(d oteltest.Data) bool {
		return d.Value(otel.WorkerRequests, "route", "/health") == 2
	})
}

// syncWriter lets the test read what the logger wrote while it writes.
type syncWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	logged chan struct{}
	once   sync.Once
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.once.Do(func() { close(w.logged) })
	return w.buf.Write(p)
}

// A collector that is down is no error at Setup: failed exports are logged
// at warn level, and Shutdown says its flush failed.
func TestCollectorDownIsLogged(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now

	w := &syncWriter{logged: make(chan struct{})}
	tel, err := otel.Setup(context.Background(), otel.Settings{
		Endpoint: addr, Interval: 10 * time.Millisecond, Timeout: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(w, nil)),
	})
	if err != nil {
		t.Fatalf("Setup with a collector down: %v", err)
	}
	select {
	case <-w.logged:
	case <-time.After(oteltest.WaitTimeout):
		t.Fatal("no failed export logged")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err == nil {
		t.Error("Shutdown reported no error though the collector is down")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if line := w.buf.String(); !strings.Contains(line, "level=WARN") || !strings.Contains(line, "OpenTelemetry export failed") || !strings.Contains(line, addr) {
		t.Errorf("log: %s", line)
	}
}

// What a worker request costs with OTLP on: metrics only, and with a span.
func BenchmarkObserveRequest(b *testing.B) {
	for _, traces := range []bool{false, true} {
		name := "metrics"
		if traces {
			name = "metrics+span"
		}
		b.Run(name, func(b *testing.B) {
			rcv := oteltest.GRPC(b)
			tel, err := otel.Setup(context.Background(), otel.Settings{Endpoint: rcv.Endpoint, Interval: time.Hour, Traces: traces})
			if err != nil {
				b.Fatal(err)
			}
			defer tel.Shutdown(context.Background())
			h, err := otel.NewHTTP(tel, "nethttp")
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			end := start.Add(time.Millisecond)
			b.ReportAllocs()
			for b.Loop() {
				h.ObserveRequest("GET", "/work", 200, start, end)
			}
		})
	}
}
