// Package servicetest is the conformance suite of the worker HTTP contract.
// Every worker adapter runs it against its own real server, so all of them
// are held to the same status codes, headers and bytes.
//
//	func TestConformance(t *testing.T) {
//		target := servicetest.Start(t, servicetest.Config("worker-x"), workerx.Serve)
//		servicetest.Run(t, target)
//	}
//
// Adapter runs it together with the other checks every adapter shares
// (graceful shutdown, a refused config, Run on an address); Handler and
// BenchmarkHandler check an http.Handler based adapter in process:
//
//	func TestAdapter(t *testing.T)           { servicetest.Adapter(t, workerx.Framework, workerx.Serve, workerx.Run) }
//	func TestHandlerInProcess(t *testing.T)  { servicetest.Handler(t, workerx.Handler) }
//	func BenchmarkWorkNoDelay(b *testing.B) { servicetest.BenchmarkHandler(b, workerx.Handler) }
package servicetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lemonade-lb/lemonade/observability/metrics"
	"github.com/lemonade-lb/lemonade/service"
)

// Target is a running worker under test.
type Target struct {
	URL   string        // base URL, e.g. "http://127.0.0.1:41234"
	Name  string        // the ServiceName it was started with
	Delay time.Duration // the WorkDelay it was started with
}

// ServeFunc is the signature of every adapter's Serve.
type ServeFunc func(ctx context.Context, ln net.Listener, cfg service.Config) error

// Config returns the configuration the suite's servers run with: a short
// delay, so tests stay quick but the delay is still measurable.
func Config(name string) service.Config {
	return service.Config{ListenAddress: "127.0.0.1:0", ServiceName: name, WorkDelay: 20 * time.Millisecond}
}

// stopTimeout bounds how long a server may take to stop once asked.
const stopTimeout = 15 * time.Second

// Start runs serve on a new 127.0.0.1:0 listener until the test ends, then
// stops it and fails the test unless serve returns nil in time.
func Start(t testing.TB, cfg service.Config, serve ServeFunc) Target {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := awaitStop(done, "serve"); err != "" {
			t.Error(err)
		}
	})
	return Target{URL: "http://" + ln.Addr().String(), Name: cfg.ServiceName, Delay: cfg.WorkDelay}
}

// awaitStop waits for a serve or a run, whose context has ended, to return
// nil. It says what went wrong instead: another error, or still running
// after stopTimeout.
func awaitStop(done <-chan error, what string) string {
	select {
	case err := <-done:
		if err != nil {
			return fmt.Sprintf("%s returned %v after its context ended; want nil", what, err)
		}
		return ""
	case <-time.After(stopTimeout):
		return fmt.Sprintf("%s still running %s after its context ended", what, stopTimeout)
	}
}

// client talks to one target; its transport is closed at the end of the
// test so no connection goroutine outlives it.
type client struct {
	t      *testing.T
	base   string
	http   *http.Client
	target Target
}

func newClient(t *testing.T, target Target) *client {
	tr := &http.Transport{
		Proxy:               nil, // loopback only, whatever HTTP_PROXY says
		DisableCompression:  true,
		MaxIdleConnsPerHost: 16,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{t: t, base: target.URL, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}, target: target}
}

// on is c failing t: a subtest's own, since only the test that calls
// Fatal may be stopped by it.
func (c *client) on(t *testing.T) *client {
	on := *c
	on.t = t
	return &on
}

// reply is what the suite looks at in an answer.
type reply struct {
	status  int
	header  http.Header
	body    []byte
	elapsed time.Duration
}

func (c *client) do(method, path string) reply {
	c.t.Helper()
	r, err := c.try(context.Background(), method, path)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

func (c *client) try(ctx context.Context, method, path string) (reply, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return reply{}, err
	}
	start := time.Now()
	res, err := c.http.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{status: res.StatusCode, header: res.Header, body: body, elapsed: time.Since(start)}, nil
}

// expect checks status, Content-Type and exact body of an answer.
func expect(t *testing.T, what string, got reply, want service.Response) {
	t.Helper()
	if got.status != want.Status {
		t.Errorf("%s: status %d; want %d (body %q)", what, got.status, want.Status, got.body)
	}
	if ct := got.header.Get("Content-Type"); ct != want.ContentType {
		t.Errorf("%s: Content-Type %q; want %q", what, ct, want.ContentType)
	}
	if !bytes.Equal(got.body, want.Body) {
		t.Errorf("%s: body\n  %q\nwant\n  %q", what, got.body, want.Body)
	}
	if allow := got.header.Get("Allow"); allow != want.Allow {
		t.Errorf("%s: Allow %q; want %q", what, allow, want.Allow)
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// Run checks target against the whole HTTP contract. It sends requests one
// subtest at a time, and expects to be the target's only client: the metrics
// checks count exactly.
func Run(t *testing.T, target Target) {
	c := newClient(t, target)
	// The reference: the same inputs through service directly. Adapters must
	// put its answers on the wire unchanged.
	ref, err := service.New(service.Config{ServiceName: target.Name, WorkDelay: target.Delay})
	if err != nil {
		t.Fatalf("target config: %v", err)
	}
	name := jsonString(target.Name)

	t.Run("health", func(t *testing.T) {
		c := c.on(t)
		want := service.Response{Status: 200, ContentType: "application/json",
			Body: []byte(`{"status":"ok","service":` + name + `}`)}
		expect(t, "GET /health", c.do("GET", "/health"), want)
		expect(t, "GET /health?x=1", c.do("GET", "/health?x=1"), want)
	})

	t.Run("work with the configured delay", func(t *testing.T) {
		c := c.on(t)
		r := c.do("GET", "/work")
		expect(t, "GET /work", r, service.Response{Status: 200, ContentType: "application/json",
			Body: fmt.Appendf(nil, `{"status":true,"service":%s,"duration_ms":%d}`, name, target.Delay.Milliseconds())})
		if r.elapsed < target.Delay {
			t.Errorf("GET /work took %s; want at least the configured %s", r.elapsed, target.Delay)
		}
	})

	t.Run("work with a delay parameter", func(t *testing.T) {
		c := c.on(t)
		cases := []struct {
			query   string
			millis  int64
			atLeast time.Duration
		}{
			{"delay=50", 50, 50 * time.Millisecond},
			{"delay=50ms", 50, 50 * time.Millisecond},
			{"delay=0.06s", 60, 60 * time.Millisecond},
			{"delay=1500us", 1, 1500 * time.Microsecond},
			{"delay=0", 0, 0},
			{"other=1&delay=0ms", 0, 0},
		}
		for _, tc := range cases {
			r := c.do("GET", "/work?"+tc.query)
			expect(t, "GET /work?"+tc.query, r, service.Response{Status: 200, ContentType: "application/json",
				Body: fmt.Appendf(nil, `{"status":true,"service":%s,"duration_ms":%d}`, name, tc.millis)})
			if r.elapsed < tc.atLeast {
				t.Errorf("GET /work?%s took %s; want at least %s", tc.query, r.elapsed, tc.atLeast)
			}
		}
		// delay=0 must not wait the configured delay; the bound is loose on
		// purpose (noisy machines), it only has to be well under a second.
		if r := c.do("GET", "/work?delay=0"); r.elapsed > 2*time.Second {
			t.Errorf("GET /work?delay=0 took %s", r.elapsed)
		}
	})

	t.Run("work with a bad delay", func(t *testing.T) {
		c := c.on(t)
		for _, q := range []string{
			"delay=abc", "delay=", "delay=-5", "delay=-1ms", "delay=60001", "delay=61s", "delay=1h",
			"delay=1&delay=2", "delay=9223372036854775807", "delay=5xs", "delay=%zz", "delay=1.5",
			// Absurdly long: refused, never slept on (the cap is MaxRequestDelay).
			"delay=1e12", "delay=1000000000000", "delay=99999999999999999999", "delay=2562048h",
			"delay=60.001s", "delay=-0.5s", "delay=NaN", "delay=Inf",
		} {
			want := ref.HandleWork(context.Background(), q)
			if want.Status != http.StatusBadRequest {
				t.Fatalf("reference answers %q with %d; the case list is wrong", q, want.Status)
			}
			got := c.do("GET", "/work?"+q)
			expect(t, "GET /work?"+q, got, want)
			var e service.ErrorBody
			if err := json.Unmarshal(got.body, &e); err != nil || e.Error == "" {
				t.Errorf("GET /work?%s: body %q is not {\"error\":...}", q, got.body)
			}
		}
	})

	t.Run("not found", func(t *testing.T) {
		c := c.on(t)
		for _, p := range []string{"/", "/nope", "/health/", "/work/extra", "/metricsx", "/healthz", "/Work"} {
			expect(t, "GET "+p, c.do("GET", p), service.NotFound())
		}
		expect(t, "POST /nope", c.do("POST", "/nope"), service.NotFound())
		if string(service.NotFound().Body) != `{"error":"not found"}` {
			t.Errorf("404 body changed: %s", service.NotFound().Body)
		}
	})

	t.Run("method not allowed", func(t *testing.T) {
		c := c.on(t)
		for _, route := range service.Routes {
			for _, m := range []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS"} {
				want := service.MethodNotAllowed(m, route)
				if want.Allow != "GET, HEAD" {
					t.Fatalf("Allow changed: %q", want.Allow)
				}
				expect(t, m+" "+route, c.do(m, route), want)
			}
		}
	})

	t.Run("HEAD follows GET", func(t *testing.T) {
		c := c.on(t)
		for _, p := range []string{"/health", "/work?delay=0", "/work", "/metrics"} {
			r := c.do("HEAD", p)
			if r.status != 200 || len(r.body) != 0 {
				t.Errorf("HEAD %s: status %d, %d body bytes; want 200 and none", p, r.status, len(r.body))
			}
			wantCT := service.ContentTypeJSON
			if p == "/metrics" {
				wantCT = metrics.TextContentType
			}
			if ct := r.header.Get("Content-Type"); ct != wantCT {
				t.Errorf("HEAD %s: Content-Type %q; want %q", p, ct, wantCT)
			}
		}
		if r := c.do("HEAD", "/work"); r.elapsed < target.Delay {
			t.Errorf("HEAD /work took %s; want at least %s, like GET", r.elapsed, target.Delay)
		}
		if r := c.do("HEAD", "/work?delay=bad"); r.status != 400 {
			t.Errorf("HEAD /work?delay=bad: status %d; want 400", r.status)
		}
		if r := c.do("HEAD", "/nope"); r.status != 404 || len(r.body) != 0 {
			t.Errorf("HEAD /nope: status %d, body %q; want 404, none", r.status, r.body)
		}
	})

	t.Run("metrics count requests", func(t *testing.T) {
		c := c.on(t)
		before := c.scrape()
		for range 3 {
			c.do("GET", "/health")
		}
		c.do("GET", "/work?delay=0")
		c.do("GET", "/work?delay=x")
		c.do("GET", "/nope")
		c.do("POST", "/health")
		after := c.scrape()
		for _, w := range []struct {
			route, code string
			n           float64
		}{
			{"/health", "200", 3}, {"/work", "200", 1}, {"/work", "400", 1},
			{"other", "404", 1}, {"/health", "405", 1}, {"/metrics", "200", 1},
		} {
			if d := after.requests(w.route, w.code) - before.requests(w.route, w.code); d != w.n {
				t.Errorf("%s{route=%q,code=%q} grew by %v; want %v", metrics.RequestsTotal, w.route, w.code, d, w.n)
			}
		}
		if got := after.inFlight(); got != 1 {
			t.Errorf("%s = %v while only the scrape runs; want 1", metrics.InFlight, got)
		}
		if after.durationCount("/health") < 3 {
			t.Errorf("%s{route=\"/health\"} counted %v; want >= 3", metrics.RequestDuration, after.durationCount("/health"))
		}
		if r := c.do("GET", "/metrics"); r.header.Get("Content-Type") != metrics.TextContentType {
			t.Errorf("GET /metrics: Content-Type %q; want %q", r.header.Get("Content-Type"), metrics.TextContentType)
		}
	})

	t.Run("abandoned work ends early", func(t *testing.T) { testCancel(t, c.on(t)) })

	t.Run("requests run concurrently", func(t *testing.T) {
		c := c.on(t)
		// 40 requests of 200 ms each take 8 s one after another; together
		// they must finish well before that.
		const n, delay = 40, 200 * time.Millisecond
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() {
				r, err := c.try(context.Background(), "GET", "/work?delay=200ms")
				if err == nil && r.status != 200 {
					err = fmt.Errorf("status %d", r.status)
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("concurrent /work: %v", err)
			}
		}
		if el := time.Since(start); el > n*delay/2 {
			t.Errorf("%d concurrent requests of %s took %s: not served concurrently", n, delay, el)
		}
	})
}

// testCancel abandons a long /work and watches the server's metrics for the
// handler ending: the request counted with 499 and in-flight back to idle,
// long before the requested 10 s.
func testCancel(t *testing.T, c *client) {
	const long = 10 * time.Second
	const bound = 4 * time.Second // waits below stay well under long
	idle := c.scrape().inFlight()
	before := c.scrape().requests("/work", "499")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := c.try(ctx, "GET", "/work?delay=10s")
		done <- err
	}()
	if !waitFor(bound, func() bool { return c.scrape().inFlight() > idle }) {
		t.Fatalf("the /work request never showed as in flight")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned request returned %v; want context.Canceled", err)
	}
	ended := waitFor(bound, func() bool {
		m := c.scrape()
		return m.requests("/work", "499") == before+1 && m.inFlight() == idle
	})
	if !ended {
		m := c.scrape()
		t.Fatalf("handler still running after the client left: 499 count %v (was %v), in flight %v (idle %v)",
			m.requests("/work", "499"), before, m.inFlight(), idle)
	}
	if el := time.Since(start); el >= long {
		t.Fatalf("handler ended after %s, not before the requested %s", el, long)
	}
}

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// scrapeResult is one parsed /metrics answer.
type scrapeResult map[string]*dto.MetricFamily

func (c *client) scrape() scrapeResult {
	c.t.Helper()
	r := c.do("GET", "/metrics")
	if r.status != 200 {
		c.t.Fatalf("GET /metrics: status %d: %s", r.status, r.body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(r.body))
	if err != nil {
		c.t.Fatalf("GET /metrics: not the Prometheus text format: %v\n%s", err, r.body)
	}
	// The counters only appear once a request has ended; the gauge always
	// does.
	if _, ok := mfs[metrics.InFlight]; !ok {
		c.t.Fatalf("GET /metrics: %s missing:\n%s", metrics.InFlight, r.body)
	}
	return mfs
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

func (s scrapeResult) requests(route, code string) float64 {
	for _, m := range s[metrics.RequestsTotal].GetMetric() {
		if labelsMatch(m, map[string]string{"route": route, "code": code}) {
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func (s scrapeResult) durationCount(route string) float64 {
	for _, m := range s[metrics.RequestDuration].GetMetric() {
		if labelsMatch(m, map[string]string{"route": route}) {
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return 0
}

func (s scrapeResult) inFlight() float64 {
	ms := s[metrics.InFlight].GetMetric()
	if len(ms) != 1 {
		return -1
	}
	return ms[0].GetGauge().GetValue()
}

// Shutdown checks a graceful stop: a request in flight when serve's context
// ends still gets its full answer, serve then returns nil, and the address
// no longer accepts connections.
func Shutdown(t *testing.T, serve ServeFunc) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	cfg := Config("shutdown")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- serve(ctx, ln, cfg) }()

	c := newClient(t, Target{URL: "http://" + addr, Name: cfg.ServiceName})
	if !waitFor(5*time.Second, func() bool {
		r, err := c.try(context.Background(), "GET", "/health")
		return err == nil && r.status == 200
	}) {
		t.Fatal("server never answered /health")
	}

	const delay = 300 * time.Millisecond
	type result struct {
		r   reply
		err error
	}
	inflight := make(chan result, 1)
	go func() {
		r, err := c.try(context.Background(), "GET", "/work?delay=300ms")
		inflight <- result{r, err}
	}()
	if !waitFor(5*time.Second, func() bool { return c.scrape().inFlight() >= 2 }) {
		t.Fatal("the /work request never showed as in flight")
	}
	cancel()

	res := <-inflight
	if res.err != nil {
		t.Fatalf("request in flight during shutdown failed: %v", res.err)
	}
	want := fmt.Sprintf(`{"status":true,"service":"shutdown","duration_ms":%d}`, delay.Milliseconds())
	if res.r.status != 200 || string(res.r.body) != want {
		t.Fatalf("request in flight during shutdown: %d %q; want 200 %q", res.r.status, res.r.body, want)
	}
	if err := awaitStop(served, "serve"); err != "" {
		t.Fatal(err)
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Fatal("the address still accepts connections after serve returned")
	}
}
