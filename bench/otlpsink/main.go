// Command otlpsink is an OTLP/gRPC receiver for benchmarks: it implements the
// collector's MetricsService and TraceService Export RPCs on one address,
// counts what it receives and throws it away. On SIGTERM or SIGINT (or when
// the server fails) it prints the counts as one line
//
//	otlpsink metric_exports=N metric_points=N trace_exports=N spans=N
//
// and exits. bench/compare.sh runs it behind the lemonade-otlp target, so
// that the balancer's OTLP metric export has a real collector to talk to,
// and checks afterwards that exports did arrive.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"google.golang.org/grpc"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	metricpb "go.opentelemetry.io/proto/otlp/metrics/v1"
)

// counts is what the sink has received so far.
type counts struct {
	metricExports, metricPoints, traceExports, spans atomic.Int64
}

func (c *counts) String() string {
	return fmt.Sprintf("otlpsink metric_exports=%d metric_points=%d trace_exports=%d spans=%d",
		c.metricExports.Load(), c.metricPoints.Load(), c.traceExports.Load(), c.spans.Load())
}

type metricsService struct {
	colmetricpb.UnimplementedMetricsServiceServer
	c *counts
}

func (s metricsService) Export(_ context.Context, req *colmetricpb.ExportMetricsServiceRequest) (*colmetricpb.ExportMetricsServiceResponse, error) {
	var n int64
	for _, rm := range req.GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				n += points(m)
			}
		}
	}
	s.c.metricExports.Add(1)
	s.c.metricPoints.Add(n)
	return &colmetricpb.ExportMetricsServiceResponse{}, nil
}

// points is the number of data points in m, whatever its kind.
func points(m *metricpb.Metric) int64 {
	switch d := m.GetData().(type) {
	case *metricpb.Metric_Sum:
		return int64(len(d.Sum.GetDataPoints()))
	case *metricpb.Metric_Gauge:
		return int64(len(d.Gauge.GetDataPoints()))
	case *metricpb.Metric_Histogram:
		return int64(len(d.Histogram.GetDataPoints()))
	case *metricpb.Metric_ExponentialHistogram:
		return int64(len(d.ExponentialHistogram.GetDataPoints()))
	case *metricpb.Metric_Summary:
		return int64(len(d.Summary.GetDataPoints()))
	}
	return 0
}

type traceService struct {
	coltracepb.UnimplementedTraceServiceServer
	c *counts
}

func (s traceService) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	var n int64
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			n += int64(len(ss.GetSpans()))
		}
	}
	s.c.traceExports.Add(1)
	s.c.spans.Add(n)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:4317", "listen address (host:port)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("otlpsink: ")

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	var c counts
	srv := grpc.NewServer()
	colmetricpb.RegisterMetricsServiceServer(srv, metricsService{c: &c})
	coltracepb.RegisterTraceServiceServer(srv, traceService{c: &c})

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Printf("listening on %s", ln.Addr())

	code := 0
	select {
	case <-stop:
		srv.Stop()
		<-served
	case err := <-served:
		log.Print(err)
		code = 1
	}
	fmt.Println(c.String())
	os.Exit(code)
}
