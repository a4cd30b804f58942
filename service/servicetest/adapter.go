package servicetest

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/service"
)

// RunFunc is the signature of every adapter's Run.
type RunFunc func(ctx context.Context, cfg service.Config) error

// Adapter runs every check on one adapter's Serve and Run, each as a
// subtest: the conformance suite (Run) against a server named name+"-worker",
// Shutdown, BadConfig, RunOnAddress, Observer and BadInput. name is the
// adapter's framework, e.g. "echo":
//
//	func TestAdapter(t *testing.T) { servicetest.Adapter(t, workerx.Framework, workerx.Serve, workerx.Run) }
func Adapter(t *testing.T, name string, serve ServeFunc, run RunFunc) {
	t.Run("conformance", func(t *testing.T) { Run(t, Start(t, Config(name+"-worker"), serve)) })
	t.Run("graceful shutdown", func(t *testing.T) { Shutdown(t, serve) })
	t.Run("bad config", func(t *testing.T) { BadConfig(t, serve) })
	t.Run("run", func(t *testing.T) { RunOnAddress(t, run) })
	t.Run("request observer", func(t *testing.T) { Observer(t, serve) })
	t.Run("bad input", func(t *testing.T) { BadInput(t, serve) })
}

// BadConfig checks that serve refuses an invalid configuration (a negative
// delay) with an error, and closes the listener it was given.
func BadConfig(t *testing.T, serve ServeFunc) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := serve(context.Background(), ln, service.Config{ServiceName: "x", WorkDelay: -1}); err == nil {
		t.Error("Serve accepted a negative delay")
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Error("Serve left the listener open after refusing the config")
	}
}

// RunOnAddress checks run: it serves on cfg.ListenAddress until its context
// ends and then returns nil; a second run on the same busy address fails
// with an error naming it; a bad address is an error quoting it.
func RunOnAddress(t *testing.T, run RunFunc) {
	// Find a free port, then let run bind it by address.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.Addr().String()
	probe.Close()

	cfg := Config("run")
	cfg.ListenAddress = addr
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg) }()

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
	err = run(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("Run on a busy address = %v; want an error naming %s", err, addr)
	}

	cancel()
	if err := awaitStop(done, "Run"); err != "" {
		t.Fatal(err)
	}
	if err := run(context.Background(), service.Config{ListenAddress: "nope", ServiceName: "x"}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Run with a bad address = %v", err)
	}
}

// Handler checks an adapter whose handler is an http.Handler in process,
// with no server: newHandler refuses an empty service name, and the handler
// it builds answers GET /health.
func Handler[H http.Handler](t *testing.T, newHandler func(service.Config) (H, error)) {
	if _, err := newHandler(service.Config{ServiceName: ""}); err == nil {
		t.Error("Handler accepted an empty name")
	}
	h, err := newHandler(Config("in-process"))
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/health", nil))
	if rec.Code != 200 || rec.Body.String() != `{"status":"ok","service":"in-process"}` {
		t.Fatalf("GET /health = %d %s", rec.Code, rec.Body)
	}
}

// BenchmarkHandler measures GET /work?delay=0 through an http.Handler built
// by newHandler, in process.
func BenchmarkHandler[H http.Handler](b *testing.B, newHandler func(service.Config) (H, error)) {
	h, err := newHandler(service.Config{ServiceName: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/work?delay=0", nil)
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
}
