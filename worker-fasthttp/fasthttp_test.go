package workerfasthttp

import (
	"net/http/httptest"
	"testing"

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

func TestFasthttp(t *testing.T) { servicetest.Adapter(t, Framework, Serve, Run) }

func TestFiber(t *testing.T) { servicetest.Adapter(t, FrameworkFiber, ServeFiber, RunFiber) }

func TestHandlerInProcess(t *testing.T) {
	if _, err := Handler(service.Config{}); err == nil {
		t.Error("Handler accepted an empty name")
	}
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
	if _, err := App(service.Config{}); err == nil {
		t.Error("App accepted an empty name")
	}
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
