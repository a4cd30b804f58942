package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/lemonade-lb/lemonade/observability/otel"
	"github.com/lemonade-lb/lemonade/observability/otel/oteltest"
)

// `lemonade lb` and `lemonade worker`, as a user runs them, export to a real
// OTLP receiver: the balancer its metrics over gRPC every metrics.interval,
// the worker a span per request and its request metrics over http/protobuf,
// sent when it stops (its interval is the SDK's minute).
func TestOTLPExportEndToEnd(t *testing.T) {
	lbRcv, workerRcv := oteltest.GRPC(t), oteltest.HTTP(t, "/otlp")

	workerAddr := freeAddr(t)
	w := start(t, []string{
		"LEMONADE_WORKER_OTLP_ENDPOINT=" + workerRcv.Endpoint,
		"LEMONADE_WORKER_OTLP_PROTOCOL=http/protobuf",
	}, "worker", "-f", "gin", "-a", workerAddr, "-n", "traced-worker", "-d", "1")
	waitListening(t, w, workerAddr)

	lbAddr := freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	writeLBConfig(t, cfg, lbAddr, "round_robin", 60000, workerAddr)
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("metrics:\n  interval: 100\n  timeout: 2000\n")
	f.Close()
	lb := start(t, []string{"LEMONADE_OTLP_ENDPOINT=" + lbRcv.Endpoint}, "lb", "-c", cfg)
	waitListening(t, lb, lbAddr)

	const m = 12
	for range m {
		mustGet(t, "http://"+lbAddr+"/work")
	}
	if code, _, err := httpGet("http://" + lbAddr + "/nope?x=1"); code != 404 { // a span named just GET
		t.Fatalf("GET /nope: %d, %v", code, err)
	}

	// The balancer exports while it runs. It proxied m+1 requests, and the
	// connection waitListening made.
	const conns = m + 2
	d := lbRcv.Wait(t, "lemonade.backend.connections = 14", func(d oteltest.Data) bool {
		return d.Value(otlpBackendConnections, "backend", "b0") == conns && d.Value(otlpBackendActive, "backend", "b0") == 0
	})
	if p, _ := d.Last(otlpBackendConnections); p.Attributes["address"] != workerAddr || p.Resource["service.name"] != "lemonade-lb" {
		t.Errorf("balancer point %+v", p)
	}
	if v := d.Value(otlpConnAccepted); v != conns {
		t.Errorf("%s = %v, want %d", otlpConnAccepted, v, conns)
	}

	// The worker flushes on SIGTERM.
	if code := w.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("worker exit code %d after SIGTERM:\n%s", code, w.stderr)
	}
	wd := workerRcv.Snapshot()
	spans := wd.SpansNamed("GET /work")
	if len(spans) != m {
		t.Fatalf("%d spans named GET /work, want %d:\n%s", len(spans), m, wd)
	}
	for k, v := range map[string]string{otel.AttrMethod: "GET", otel.AttrRoute: "/work", otel.AttrStatus: "200", otel.AttrFramework: "gin"} {
		if got := spans[0].Attributes[k]; got != v {
			t.Errorf("span attribute %s = %q, want %q", k, got, v)
		}
	}
	if got := spans[0].Resource["service.name"]; got != "traced-worker" {
		t.Errorf("span service.name %q, want traced-worker", got)
	}
	if n := len(wd.SpansNamed("GET")); n != 1 {
		t.Errorf("%d spans named GET (the 404), want 1", n)
	}
	if v := wd.Value(otel.WorkerRequests, "route", "/work", "code", "200"); v != m {
		t.Errorf("%s{route=/work,code=200} = %v, want %d", otel.WorkerRequests, v, m)
	}
	if p, ok := wd.Last(otel.WorkerRequestDuration, "route", "/work"); !ok || p.Count != m || p.Value < float64(m)*0.001 {
		t.Errorf("%s{route=/work} = %+v; want %d requests of at least 1 ms", otel.WorkerRequestDuration, p, m)
	}

	// The balancer flushes on SIGTERM too, and says nothing of it at info.
	if code := lb.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("balancer exit code %d after SIGTERM", code)
	}
	if strings.Contains(lb.stderr.String(), "export failed") {
		t.Errorf("balancer log:\n%s", lb.stderr)
	}
	if !strings.Contains(lb.stderr.String(), "exporting metrics over OTLP") {
		t.Errorf("the balancer did not say it exports:\n%s", lb.stderr)
	}
}

// A bad endpoint is a usage error naming the setting and where it came
// from, before anything listens.
func TestOTLPBadEndpoint(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "lb.yaml")
	writeLBConfig(t, cfg, freeAddr(t), "round_robin", 1000, "127.0.0.1:1")
	for _, tc := range []struct {
		env  []string
		args []string
		want []string
	}{
		{[]string{"LEMONADE_OTLP_ENDPOINT=collector"}, []string{"lb", "-c", cfg},
			[]string{`LEMONADE_OTLP_ENDPOINT="collector": otlp_endpoint:`, "want HOST:PORT"}},
		{[]string{"LEMONADE_OTLP_ENDPOINT=http://c:4317/otlp"}, []string{"lb", "--check", "-c", cfg},
			[]string{"otlp_endpoint:", "path", "grpc"}},
		{[]string{"LEMONADE_WORKER_OTLP_ENDPOINT=udp://c:4317"}, []string{"worker", "-f", "nethttp", "-a", freeAddr(t)},
			[]string{"LEMONADE_WORKER_OTLP_ENDPOINT", `scheme "udp"`}},
		{[]string{"LEMONADE_OTLP_PROTOCOL=http"}, []string{"worker", "-f", "fiber", "-a", freeAddr(t)},
			[]string{"LEMONADE_OTLP_PROTOCOL", `unknown protocol "http"`}},
	} {
		code, _, stderr := runLemonade(t, tc.env, tc.args...)
		if code != exitUsage {
			t.Errorf("%v %v: exit %d, want %d:\n%s", tc.env, tc.args, code, exitUsage, stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%v %v: stderr %q lacks %q", tc.env, tc.args, stderr, w)
			}
		}
	}
}
