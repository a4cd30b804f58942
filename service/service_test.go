package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
	"unsafe"
)

func newService(t testing.TB, name string, delay time.Duration) *Service {
	t.Helper()
	s, err := New(Config{ServiceName: name, WorkDelay: delay})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{{ServiceName: ""}, {ServiceName: " "}, {ServiceName: "a", WorkDelay: -time.Millisecond}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) = nil error", cfg)
		}
	}
}

func TestHealth(t *testing.T) {
	s := newService(t, "w1", 0)
	if h := s.Health(); h != (HealthBody{Status: "ok", Service: "w1"}) {
		t.Errorf("Health() = %+v", h)
	}
	r := s.HandleHealth()
	if r.Status != 200 || r.ContentType != "application/json" || r.Allow != "" ||
		string(r.Body) != `{"status":"ok","service":"w1"}` {
		t.Errorf("HandleHealth() = %d %q %q %s", r.Status, r.ContentType, r.Allow, r.Body)
	}
}

// TestBodiesMatchEncodingJSON pins the hand-built bodies to what
// encoding/json makes of the body types, for names that need escaping too.
func TestBodiesMatchEncodingJSON(t *testing.T) {
	for _, name := range []string{"w", `quote " and \ slash`, "<html>&", "ünï\u2028", "tab\there"} {
		s := newService(t, name, 7*time.Millisecond)
		want, _ := json.Marshal(HealthBody{"ok", name})
		if got := s.HandleHealth().Body; string(got) != string(want) {
			t.Errorf("health body for %q = %s; want %s", name, got, want)
		}
		want, _ = json.Marshal(WorkBody{true, name, 0})
		if got := s.HandleWork(context.Background(), "delay=0").Body; string(got) != string(want) {
			t.Errorf("work body for %q = %s; want %s", name, got, want)
		}
	}
}

func TestWorkWaitsTheDelay(t *testing.T) {
	s := newService(t, "w", 0)
	start := time.Now()
	w, err := s.Work(context.Background(), 30*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 30*time.Millisecond {
		t.Errorf("Work returned after %s; want >= 30ms", el)
	}
	if w != (WorkBody{Status: true, Service: "w", DurationMS: 30}) {
		t.Errorf("Work() = %+v", w)
	}
	if w, err := s.Work(context.Background(), 0); err != nil || w.DurationMS != 0 {
		t.Errorf("Work(0) = %+v, %v", w, err)
	}
}

func TestWorkStopsWithTheContext(t *testing.T) {
	s := newService(t, "w", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Work(ctx, time.Hour)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Work = %v; want DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("Work returned after %s; it should end with its context", el)
	}

	done, cancelNow := context.WithCancel(context.Background())
	cancelNow()
	if _, err := s.Work(done, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Work on an ended context with no delay = %v; want Canceled", err)
	}
	r := s.HandleWork(done, "")
	if r.Status != StatusClientClosedRequest || !strings.Contains(string(r.Body), "work abandoned") {
		t.Errorf("HandleWork on an ended context = %d %s", r.Status, r.Body)
	}
}

func TestHandleWork(t *testing.T) {
	s := newService(t, "w", 2*time.Millisecond)
	cases := []struct {
		query  string
		status int
		body   string
	}{
		{"", 200, `{"status":true,"service":"w","duration_ms":2}`},
		{"x=1", 200, `{"status":true,"service":"w","duration_ms":2}`},
		{"delay=3", 200, `{"status":true,"service":"w","duration_ms":3}`},
		{"delay=3ms", 200, `{"status":true,"service":"w","duration_ms":3}`},
		{"delay=0", 200, `{"status":true,"service":"w","duration_ms":0}`},
		{"delay=abc", 400, `{"error":"invalid delay \"abc\": want integer milliseconds or a duration from 0 to 1m0s, like \"5ms\""}`},
		{"delay=-1", 400, `{"error":"invalid delay \"-1\": want integer milliseconds or a duration from 0 to 1m0s, like \"5ms\""}`},
		{"delay=60001", 400, `{"error":"invalid delay \"60001\": want integer milliseconds or a duration from 0 to 1m0s, like \"5ms\""}`},
		{"delay=1&delay=1", 400, `{"error":"delay given 2 times; give it once"}`},
		{"delay=%zz", 400, `{"error":"invalid query string: invalid URL escape \"%zz\""}`},
	}
	for _, tc := range cases {
		r := s.HandleWork(context.Background(), tc.query)
		if r.Status != tc.status || string(r.Body) != tc.body || r.ContentType != ContentTypeJSON {
			t.Errorf("HandleWork(%q) = %d %q %s; want %d %s", tc.query, r.Status, r.ContentType, r.Body, tc.status, tc.body)
		}
	}
}

func TestRequestDelay(t *testing.T) {
	good := map[string]time.Duration{
		"": 5 * time.Millisecond, "other=1": 5 * time.Millisecond, "delay=0": 0, "delay=60000": time.Minute,
		"delay=60s": time.Minute, "delay=1m": time.Minute, "delay=%31%30": 10 * time.Millisecond, "delay=1500us": 1500 * time.Microsecond,
	}
	for q, want := range good {
		if got, err := RequestDelay(q, 5*time.Millisecond); err != nil || got != want {
			t.Errorf("RequestDelay(%q) = %v, %v; want %v", q, got, err, want)
		}
	}
	for _, q := range []string{"delay=", "delay=60001", "delay=1m0.001s", "delay=-0.5s", "delay=x", "delay=1;x=2", "delay=1&delay=2"} {
		if got, err := RequestDelay(q, 0); err == nil {
			t.Errorf("RequestDelay(%q) = %v, nil; want an error", q, got)
		}
	}
}

func FuzzRequestDelay(f *testing.F) {
	for _, q := range []string{"", "delay=5", "delay=5ms", "delay=-1", "delay=60001", "delay=%zz", "delay=1&delay=2", "a=b;c"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		d, err := RequestDelay(q, 7*time.Millisecond)
		if err != nil {
			return
		}
		if d < 0 || d > MaxRequestDelay {
			t.Fatalf("RequestDelay(%q) = %v, outside [0, %s]", q, d, MaxRequestDelay)
		}
	})
}

func TestNotFoundAndMethodNotAllowed(t *testing.T) {
	r := NotFound()
	if r.Status != 404 || string(r.Body) != `{"error":"not found"}` || r.Allow != "" {
		t.Errorf("NotFound() = %+v", r)
	}
	r = MethodNotAllowed("POST", "/work")
	if r.Status != 405 || r.Allow != "GET, HEAD" || r.ContentType != ContentTypeJSON ||
		string(r.Body) != `{"error":"method POST is not allowed on /work; use GET, HEAD"}` {
		t.Errorf("MethodNotAllowed() = %d %q %s", r.Status, r.Allow, r.Body)
	}
}

func TestMetricsCountRequests(t *testing.T) {
	s := newService(t, "w", 0)
	s.EndRequest("GET", "/health", 200, s.StartRequest())
	s.EndRequest("GET", "/random", 404, s.StartRequest())
	r := s.HandleMetrics()
	if r.Status != 200 || !strings.HasPrefix(r.ContentType, "text/plain") {
		t.Fatalf("HandleMetrics() = %d %q", r.Status, r.ContentType)
	}
	for _, line := range []string{
		`lemonade_worker_http_requests_total{code="200",route="/health"} 1`,
		`lemonade_worker_http_requests_total{code="404",route="other"} 1`,
		`lemonade_worker_http_requests_in_flight 0`,
	} {
		if !strings.Contains(string(r.Body), line) {
			t.Errorf("metrics lack %q:\n%s", line, r.Body)
		}
	}
	// Two services never share a registry.
	if other := newService(t, "x", 0); other.Registry() == s.Registry() {
		t.Error("services share a registry")
	}
}

func BenchmarkHandleWorkNoDelay(b *testing.B) {
	s := newService(b, "bench", 0)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		s.HandleWork(ctx, "delay=0")
	}
}

func BenchmarkHandleHealth(b *testing.B) {
	s := newService(b, "bench", 0)
	b.ReportAllocs()
	for b.Loop() {
		s.HandleHealth()
	}
}

func ExampleService_HandleWork() {
	s, err := New(Config{ServiceName: "worker-1", WorkDelay: 20 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	r := s.HandleWork(context.Background(), "delay=0")
	fmt.Println(r.Status, string(r.Body))
	r = s.HandleWork(context.Background(), "delay=soon")
	fmt.Println(r.Status, string(r.Body))
	// Output:
	// 200 {"status":true,"service":"worker-1","duration_ms":0}
	// 400 {"error":"invalid delay \"soon\": want integer milliseconds or a duration from 0 to 1m0s, like \"5ms\""}
}

func ExampleLoad() {
	cfg, err := Load(Flags{Address: "127.0.0.1:50510", Name: "worker-1", Delay: "-5"})
	fmt.Println(cfg == Config{}, err)
	// Output: true invalid work delay "-5" from flag --delay: must not be negative
}

func TestConfigIsTheOneGiven(t *testing.T) {
	cfg := Config{ListenAddress: "127.0.0.1:7001", ServiceName: "w", WorkDelay: 5 * time.Millisecond, OTLPEndpoint: "127.0.0.1:4317"}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Config(); got != cfg {
		t.Errorf("Config() = %+v; want %+v", got, cfg)
	}
}

// CanonicalMethod returns the constant, never the string it was given: that
// may alias a buffer the server reuses (EndRequest).
func TestCanonicalMethod(t *testing.T) {
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace} {
		buf := []byte(m)
		got := CanonicalMethod(unsafe.String(&buf[0], len(buf)))
		if got != m || unsafe.StringData(got) != unsafe.StringData(m) {
			t.Errorf("CanonicalMethod(%q) = %q, not the constant", m, got)
		}
	}
	for _, m := range []string{"get", "PROPFIND", "", "GET "} {
		if got := CanonicalMethod(m); got != "_OTHER" {
			t.Errorf("CanonicalMethod(%q) = %q; want _OTHER", m, got)
		}
	}
}
