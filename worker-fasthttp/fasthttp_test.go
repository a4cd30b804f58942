package workerfasthttp

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"

	"github.com/lemonade-lb/lemonade/service"
	"github.com/lemonade-lb/lemonade/service/servicetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// fasthttp's own: a process-wide clock for the Date header, and each
		// worker pool's cleaner, which notices the pool stopped only when its
		// up to 10 s sleep ends. Neither belongs to a request or a server of
		// ours; everything else must be gone.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	)
}

func TestConformanceFasthttp(t *testing.T) {
	servicetest.Run(t, servicetest.Start(t, servicetest.Config("fasthttp-worker"), Serve))
}

func TestConformanceFiber(t *testing.T) {
	servicetest.Run(t, servicetest.Start(t, servicetest.Config("fiber-worker"), ServeFiber))
}

func TestGracefulShutdownFasthttp(t *testing.T) { servicetest.Shutdown(t, Serve) }

func TestGracefulShutdownFiber(t *testing.T) { servicetest.Shutdown(t, ServeFiber) }

func TestHandlerInProcess(t *testing.T) {
	h, err := Handler(servicetest.Config("in-process"))
	if err != nil {
		t.Fatal(err)
	}
	var rc fasthttp.RequestCtx
	rc.Request.SetRequestURI("/health")
	h(&rc)
	if rc.Response.StatusCode() != 200 || string(rc.Response.Body()) != `{"status":"ok","service":"in-process"}` {
		t.Fatalf("GET /health = %d %s", rc.Response.StatusCode(), rc.Response.Body())
	}
}

func TestAppInProcess(t *testing.T) {
	app, err := App(servicetest.Config("in-process"))
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/work", nil)
	res, err := app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 405 || res.Header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST /work = %d, Allow %q", res.StatusCode, res.Header.Get("Allow"))
	}
}

func TestBadConfig(t *testing.T) {
	if _, err := Handler(service.Config{}); err == nil {
		t.Error("Handler accepted an empty name")
	}
	if _, err := App(service.Config{}); err == nil {
		t.Error("App accepted an empty name")
	}
	for name, serve := range map[string]servicetest.ServeFunc{"fasthttp": Serve, "fiber": ServeFiber} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := serve(context.Background(), ln, service.Config{ServiceName: "x", WorkDelay: -1}); err == nil {
			t.Errorf("%s: Serve accepted a negative delay", name)
		}
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			c.Close()
			t.Errorf("%s: listener left open after refusing the config", name)
		}
	}
}

func TestRun(t *testing.T) {
	for name, run := range map[string]func(context.Context, service.Config) error{"fasthttp": Run, "fiber": RunFiber} {
		t.Run(name, func(t *testing.T) {
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
				t.Fatalf("never served: %v", err)
			}
			res.Body.Close()
			if err := run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), addr) {
				t.Errorf("second run on a busy address = %v; want an error naming %s", err, addr)
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("returned %v after cancel; want nil", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("did not stop")
			}
		})
	}
}

func BenchmarkWorkNoDelay(b *testing.B) {
	h, err := Handler(service.Config{ServiceName: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	var rc fasthttp.RequestCtx
	b.ReportAllocs()
	for b.Loop() {
		rc.Request.SetRequestURI("/work?delay=0")
		h(&rc)
		rc.Response.Reset()
	}
}
