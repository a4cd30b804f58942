package workerecho

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lemonade-lb/lemonade/service"
	"github.com/lemonade-lb/lemonade/service/servicetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	servicetest.Run(t, servicetest.Start(t, servicetest.Config("echo-worker"), Serve))
}

func TestGracefulShutdown(t *testing.T) {
	servicetest.Shutdown(t, Serve)
}

func TestHandlerInProcess(t *testing.T) {
	h, err := Handler(servicetest.Config("in-process"))
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/health", nil))
	if rec.Code != 200 || rec.Body.String() != `{"status":"ok","service":"in-process"}` {
		t.Fatalf("GET /health = %d %s", rec.Code, rec.Body)
	}
}

func TestBadConfig(t *testing.T) {
	if _, err := Handler(service.Config{ServiceName: ""}); err == nil {
		t.Error("Handler accepted an empty name")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := Serve(context.Background(), ln, service.Config{ServiceName: "x", WorkDelay: -1}); err == nil {
		t.Error("Serve accepted a negative delay")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("Serve left the listener open after refusing the config")
	}
}

func TestRun(t *testing.T) {
	// Find a free port, then let Run bind it by address.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.Addr().String()
	probe.Close()

	cfg := servicetest.Config("run")
	cfg.ListenAddress = addr
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()

	client := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	var res *http.Response
	for range 200 {
		if res, err = client.Get("http://" + addr + "/health"); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("Run never served: %v", err)
	}
	res.Body.Close()

	// A second Run on the same address fails, naming it.
	err = Run(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("Run on a busy address = %v; want an error naming %s", err, addr)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after cancel; want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not stop")
	}
	if err := Run(context.Background(), service.Config{ListenAddress: "nope", ServiceName: "x"}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Run with a bad address = %v", err)
	}
}

func BenchmarkWorkNoDelay(b *testing.B) {
	h, err := Handler(service.Config{ServiceName: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/work?delay=0", nil)
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
}
