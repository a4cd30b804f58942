package main

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	metricpb "go.opentelemetry.io/proto/otlp/metrics/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// runMainEnv makes the test binary run main instead of the tests (command).
const runMainEnv = "OTLPSINK_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main() // exits
	}
	goleak.VerifyTestMain(m)
}

// command is the test binary run as otlpsink with args; under go test -cover it
// writes its counters into GOCOVERDIR like any -cover binary. Under -race it
// would wait a second before a clean exit: not here.
func command(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1",
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	return cmd
}

// sink is a running otlpsink and the address it listens on.
type sink struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	addr   string
}

// startSink runs otlpsink on a loopback port and waits until it listens; it is
// killed at cleanup if still running.
func startSink(t *testing.T) *sink {
	t.Helper()
	s := &sink{cmd: command("-addr", "127.0.0.1:0")}
	s.cmd.Stdout = &s.stdout
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.cmd.Process.Kill()
			s.cmd.Wait()
		}
	})
	line, err := bufio.NewReader(stderr).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "otlpsink: listening on ")
	if err != nil || !ok {
		t.Fatalf("otlpsink said %q (%v), want it listening", line, err)
	}
	s.addr = addr
	return s
}

// stop sends sig and returns the exit code and what the sink printed.
func (s *sink) stop(t *testing.T, sig os.Signal) (int, string) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-done
		t.Fatalf("otlpsink did not exit within 20s of %v", sig)
	}
	return s.cmd.ProcessState.ExitCode(), s.stdout.String()
}

func sum(points int) *metricpb.Metric {
	return &metricpb.Metric{Data: &metricpb.Metric_Sum{Sum: &metricpb.Sum{DataPoints: make([]*metricpb.NumberDataPoint, points)}}}
}

func TestSinkCountsWhatItReceives(t *testing.T) {
	s := startSink(t)
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	metrics := []*colmetricpb.ExportMetricsServiceRequest{
		{ResourceMetrics: []*metricpb.ResourceMetrics{
			{ScopeMetrics: []*metricpb.ScopeMetrics{{Metrics: []*metricpb.Metric{
				sum(2), // every kind counts its points: 2+1+1+1+3 here
				{Data: &metricpb.Metric_Gauge{Gauge: &metricpb.Gauge{DataPoints: make([]*metricpb.NumberDataPoint, 1)}}},
				{Data: &metricpb.Metric_Histogram{Histogram: &metricpb.Histogram{DataPoints: make([]*metricpb.HistogramDataPoint, 1)}}},
				{Data: &metricpb.Metric_ExponentialHistogram{ExponentialHistogram: &metricpb.ExponentialHistogram{DataPoints: make([]*metricpb.ExponentialHistogramDataPoint, 1)}}},
				{Data: &metricpb.Metric_Summary{Summary: &metricpb.Summary{DataPoints: make([]*metricpb.SummaryDataPoint, 3)}}},
				{Name: "no data"},
			}}}},
			{ScopeMetrics: []*metricpb.ScopeMetrics{{Metrics: []*metricpb.Metric{sum(1)}}, {Metrics: []*metricpb.Metric{sum(4)}}}},
		}},
		{}, // an empty export counts as an export
	}
	for _, req := range metrics {
		if _, err := colmetricpb.NewMetricsServiceClient(conn).Export(ctx, req); err != nil {
			t.Fatalf("metrics export: %v", err)
		}
	}
	traces := []*coltracepb.ExportTraceServiceRequest{
		{ResourceSpans: []*tracepb.ResourceSpans{
			{ScopeSpans: []*tracepb.ScopeSpans{{Spans: make([]*tracepb.Span, 2)}, {Spans: make([]*tracepb.Span, 1)}}},
			{ScopeSpans: []*tracepb.ScopeSpans{{Spans: make([]*tracepb.Span, 4)}}},
		}},
		{ResourceSpans: []*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{{Spans: make([]*tracepb.Span, 1)}}}}},
		{},
	}
	for _, req := range traces {
		if _, err := coltracepb.NewTraceServiceClient(conn).Export(ctx, req); err != nil {
			t.Fatalf("trace export: %v", err)
		}
	}

	code, out := s.stop(t, syscall.SIGTERM)
	if want := "otlpsink metric_exports=2 metric_points=13 trace_exports=3 spans=8\n"; code != 0 || out != want {
		t.Errorf("exit %d, stdout %q; want exit 0, %q", code, out, want)
	}
}

func TestSinkInterruptedBeforeAnyExport(t *testing.T) {
	code, out := startSink(t).stop(t, os.Interrupt)
	if want := "otlpsink metric_exports=0 metric_points=0 trace_exports=0 spans=0\n"; code != 0 || out != want {
		t.Errorf("exit %d, stdout %q; want exit 0, %q", code, out, want)
	}
}

func TestSinkAddressInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cmd := command("-addr", busy.Addr().String())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Run()
	want := "otlpsink: listen tcp " + busy.Addr().String() + ": bind: address already in use\n"
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 || stdout.Len() != 0 || stderr.String() != want {
		t.Errorf("exit %v, stdout %q, stderr %q; want exit 1 and %q", cmd.ProcessState, stdout.String(), stderr.String(), want)
	}
}
