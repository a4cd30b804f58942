package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lemonade-lb/lemonade/observability/testnet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// server starts an httptest server on 127.0.0.1 with h and returns it with
// its connection counter.
func server(t *testing.T, h http.Handler) (*httptest.Server, *countingListener) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	ln := &countingListener{Listener: srv.Listener}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, ln
}

// workerBody is what a demo worker answers on /work.
func workerBody(name string) string {
	return fmt.Sprintf(`{"status":true,"service":%q,"duration_ms":0}`, name)
}

// roundRobin answers like len(names) workers behind a round-robin balancer:
// the n-th request (from 0) is answered by names[n%len(names)], after
// delays[name] if any. served counts the requests by name.
type roundRobin struct {
	names  []string
	delays map[string]time.Duration
	next   atomic.Int64
	mu     sync.Mutex
	served map[string]int64
}

func (rr *roundRobin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := rr.names[(rr.next.Add(1)-1)%int64(len(rr.names))]
	rr.mu.Lock()
	if rr.served == nil {
		rr.served = make(map[string]int64)
	}
	rr.served[name]++
	rr.mu.Unlock()
	if d := rr.delays[name]; d > 0 {
		time.Sleep(d)
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, workerBody(name))
}

func mustRun(t *testing.T, o Options) *Report {
	t.Helper()
	rep, err := Run(context.Background(), o, nil)
	if err != nil {
		t.Fatalf("Run(%+v): %v", o, err)
	}
	return rep
}

func backendCounts(rep *Report) map[string]int64 {
	m := make(map[string]int64)
	for _, b := range rep.Backends {
		m[b.Service] = b.Count
	}
	return m
}

func TestRequestsExactAndDistribution(t *testing.T) {
	rr := &roundRobin{names: []string{"w1", "w2", "w3"}}
	srv, _ := server(t, rr)

	rep := mustRun(t, Options{URL: srv.URL + "/work", Concurrency: 7, Requests: 500})

	if rep.Requests != 500 || rep.Responses != 500 || rep.Errors != 0 {
		t.Fatalf("requests %d, responses %d, errors %d; want 500, 500, 0", rep.Requests, rep.Responses, rep.Errors)
	}
	if rr.next.Load() != 500 {
		t.Errorf("server saw %d requests, want exactly 500", rr.next.Load())
	}
	if !reflect.DeepEqual(rep.StatusCodes, map[int]int64{200: 500}) {
		t.Errorf("status codes %v, want 200: 500", rep.StatusCodes)
	}
	want := map[string]int64{"w1": 167, "w2": 167, "w3": 166}
	if got := backendCounts(rep); !reflect.DeepEqual(got, want) {
		t.Errorf("backends %v, want %v", got, want)
	}
	if rep.Backends[2].Service != "w3" {
		t.Errorf("backends not sorted by count: %+v", rep.Backends)
	}
	var share float64
	for _, b := range rep.Backends {
		share += b.Share
		if b.Latency.P50 <= 0 || b.Latency.P99 < b.Latency.P50 {
			t.Errorf("backend %s latency %+v", b.Service, b.Latency)
		}
	}
	if math.Abs(share-100) > 1e-9 {
		t.Errorf("shares add up to %v, want 100", share)
	}
	l := rep.Latency
	if !(0 < l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
		t.Errorf("latency percentiles out of order: %+v", l)
	}
	if rep.RequestsPerSecond <= 0 || rep.Interrupted {
		t.Errorf("rps %v, interrupted %v", rep.RequestsPerSecond, rep.Interrupted)
	}
}

func TestConcurrencyCappedAtRequests(t *testing.T) {
	srv, ln := server(t, &roundRobin{names: []string{"w1"}})
	rep := mustRun(t, Options{URL: srv.URL, Concurrency: 50, Requests: 3})
	if rep.Requests != 3 || rep.Concurrency != 3 {
		t.Errorf("requests %d with concurrency %d, want 3 and 3", rep.Requests, rep.Concurrency)
	}
	if n := ln.accepted.Load(); n > 3 {
		t.Errorf("%d connections for 3 requests", n)
	}
}

func TestBackendLatencyAttributed(t *testing.T) {
	const slow = 20 * time.Millisecond
	rr := &roundRobin{names: []string{"fast", "slow"}, delays: map[string]time.Duration{"slow": slow}}
	srv, _ := server(t, rr)

	rep := mustRun(t, Options{URL: srv.URL, Concurrency: 4, Requests: 40})

	for _, b := range rep.Backends {
		switch b.Service {
		case "slow":
			if b.Latency.P50 < slow {
				t.Errorf("slow backend p50 %s, want at least %s", b.Latency.P50, slow)
			}
		case "fast":
			if b.Latency.P50 >= slow {
				t.Errorf("fast backend p50 %s, want under %s", b.Latency.P50, slow)
			}
		default:
			t.Errorf("unexpected backend %q", b.Service)
		}
	}
	if rep.Latency.Max < slow {
		t.Errorf("max latency %s, want at least %s", rep.Latency.Max, slow)
	}
}

func TestStatusCodesAndUnknownService(t *testing.T) {
	var n atomic.Int64
	srv, _ := server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) % 4 {
		case 0:
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, workerBody("w1")) // a backend that names itself on error
		case 1:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"not found"}`)
		case 2:
			io.WriteString(w, "plain text, not JSON")
		case 3:
			io.WriteString(w, workerBody("w2"))
		}
	}))

	rep := mustRun(t, Options{URL: srv.URL, Concurrency: 3, Requests: 400})

	if want := map[int]int64{200: 200, 404: 100, 500: 100}; !reflect.DeepEqual(rep.StatusCodes, want) {
		t.Errorf("status codes %v, want %v", rep.StatusCodes, want)
	}
	if want := map[string]int64{"w1": 100, "w2": 100, Unknown: 200}; !reflect.DeepEqual(backendCounts(rep), want) {
		t.Errorf("backends %v, want %v", backendCounts(rep), want)
	}
	if rep.Errors != 0 || rep.Responses != 400 {
		t.Errorf("errors %d, responses %d; an HTTP error status is a response, not an error", rep.Errors, rep.Responses)
	}
}

func TestServiceOf(t *testing.T) {
	for body, want := range map[string]string{
		`{"status":true,"service":"gin","duration_ms":5}`: "gin",
		`{"status":"ok","service":"echo"}`:                "echo",
		`{"service":""}`:                                  Unknown,
		`{"service":42}`:                                  Unknown,
		`{"status":true}`:                                 Unknown,
		`{"service":"w1"`:                                 Unknown,
		`<html>`:                                          Unknown,
		``:                                                Unknown,
	} {
		if got := serviceOf([]byte(body)); got != want {
			t.Errorf("serviceOf(%q) = %q, want %q", body, got, want)
		}
	}
}

func FuzzServiceOf(f *testing.F) {
	f.Add([]byte(workerBody("w1")))
	f.Add([]byte(`{"service":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if s := serviceOf(body); s == "" {
			t.Fatalf("serviceOf(%q) is empty; want a name or %q", body, Unknown)
		}
	})
}

func TestLargeBodyIsReadAndConnectionReused(t *testing.T) {
	big := strings.Repeat("x", 3*maxBody)
	srv, ln := server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, big)
	}))
	rep := mustRun(t, Options{URL: srv.URL, Concurrency: 2, Requests: 10})
	if rep.Responses != 10 || backendCounts(rep)[Unknown] != 10 {
		t.Errorf("responses %d, backends %v", rep.Responses, backendCounts(rep))
	}
	// One or two: a worker scheduled late may find the budget spent.
	if n := ln.accepted.Load(); n < 1 || n > 2 {
		t.Errorf("%d connections, want at most 2: a body past maxBody must still be drained", n)
	}
}

func TestBackendNamesCapped(t *testing.T) {
	var n atomic.Int64
	srv, _ := server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, workerBody(fmt.Sprint("made-up-", n.Add(1))))
	}))
	rep := mustRun(t, Options{URL: srv.URL, Concurrency: 4, Requests: 3 * maxBackends})
	if len(rep.Backends) > maxBackends {
		t.Errorf("%d backend rows, want at most %d", len(rep.Backends), maxBackends)
	}
	var sum int64
	for _, b := range rep.Backends {
		sum += b.Count
	}
	if sum != rep.Responses || backendCounts(rep)[Other] == 0 {
		t.Errorf("backend counts add up to %d of %d responses, %s has %d", sum, rep.Responses, Other, backendCounts(rep)[Other])
	}
}

// hijacking starts a server that takes each connection over once the
// request has arrived and hands it to do.
func hijacking(t *testing.T, do func(net.Conn)) string {
	t.Helper()
	srv, _ := server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		do(c)
	}))
	return srv.URL
}

func TestErrorKinds(t *testing.T) {
	tests := []struct {
		name string
		url  func(t *testing.T) string
		o    Options
		want ErrorKind
		text string // in the example message
	}{
		{
			name: "connect refused",
			url:  func(t *testing.T) string { return "http://" + testnet.Addr(t) + "/work" },
			want: ErrConnectRefused, text: "refused",
		},
		{
			name: "reset",
			url: func(t *testing.T) string {
				return hijacking(t, func(c net.Conn) {
					c.(*net.TCPConn).SetLinger(0) // close with RST
					c.Close()
				})
			},
			want: ErrReset, text: "reset",
		},
		{
			name: "EOF",
			url: func(t *testing.T) string {
				return hijacking(t, func(c net.Conn) { c.Close() })
			},
			want: ErrEOF, text: "EOF",
		},
		{
			name: "EOF in the body",
			url: func(t *testing.T) string {
				return hijacking(t, func(c net.Conn) {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"service\":")
					c.Close()
				})
			},
			want: ErrEOF, text: "EOF",
		},
		{
			name: "timeout",
			url: func(t *testing.T) string {
				srv, _ := server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					select {
					case <-r.Context().Done():
					case <-time.After(5 * time.Second):
					}
				}))
				return srv.URL
			},
			o:    Options{Timeout: 50 * time.Millisecond},
			want: ErrTimeout, text: "timeout",
		},
		{
			name: "other",
			url: func(t *testing.T) string {
				return hijacking(t, func(c net.Conn) {
					io.WriteString(c, "this is not HTTP\r\n\r\n")
					c.Close()
				})
			},
			want: ErrOther, text: "malformed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.o
			o.URL, o.Concurrency, o.Requests = tt.url(t), 2, 6
			rep := mustRun(t, o)
			want := []ErrorCount{{Kind: tt.want, Count: 6}}
			if len(rep.ErrorKinds) == 1 {
				want[0].Example = rep.ErrorKinds[0].Example
			}
			if !reflect.DeepEqual(rep.ErrorKinds, want) || rep.Errors != 6 || rep.Responses != 0 {
				t.Fatalf("errors %d %+v, responses %d; want 6 of kind %s", rep.Errors, rep.ErrorKinds, rep.Responses, tt.want)
			}
			if !strings.Contains(rep.ErrorKinds[0].Example, tt.text) {
				t.Errorf("example %q does not mention %q", rep.ErrorKinds[0].Example, tt.text)
			}
			if len(rep.StatusCodes) != 0 || len(rep.Backends) != 0 {
				t.Errorf("status codes %v, backends %v; want none", rep.StatusCodes, rep.Backends)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	opErr := func(errno syscall.Errno) error {
		return fmt.Errorf("wrapped: %w", &net.OpError{Op: "read", Net: "tcp", Err: errno})
	}
	for _, tt := range []struct {
		err  error
		want ErrorKind
	}{
		{opErr(syscall.ECONNREFUSED), ErrConnectRefused},
		{opErr(syscall.ECONNRESET), ErrReset},
		{opErr(syscall.EPIPE), ErrReset},
		{context.DeadlineExceeded, ErrTimeout},
		{&net.OpError{Op: "dial", Err: &timeoutErr{}}, ErrTimeout},
		{io.EOF, ErrEOF},
		{fmt.Errorf("x: %w", io.ErrUnexpectedEOF), ErrEOF},
		{errors.New("tls: bad certificate"), ErrOther},
	} {
		if got := errorKinds[classify(tt.err)]; got != tt.want {
			t.Errorf("classify(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestDurationStopsInTime(t *testing.T) {
	// Each request takes 200ms, so requests are in flight when the time is
	// up: they are cut short, and must not count as errors.
	rr := &roundRobin{names: []string{"w1"}, delays: map[string]time.Duration{"w1": 200 * time.Millisecond}}
	srv, _ := server(t, rr)

	start := time.Now()
	rep := mustRun(t, Options{URL: srv.URL, Concurrency: 3, Duration: 500 * time.Millisecond})
	wall := time.Since(start)

	// At least the duration; the upper bound is generous for a loaded
	// machine (a run that kept going would take far longer).
	if wall < 500*time.Millisecond || wall > 5*time.Second {
		t.Errorf("a 500ms run took %s", wall)
	}
	if rep.Elapsed < 500*time.Millisecond || rep.Elapsed > wall {
		t.Errorf("elapsed %s, wall %s", rep.Elapsed, wall)
	}
	if rep.Errors != 0 {
		t.Errorf("%d errors %+v: requests cut short by the end of the run are not errors", rep.Errors, rep.ErrorKinds)
	}
	// 3 workers × 2 whole requests of 200ms in 500ms, fewer on a slow machine.
	if rep.Responses < 3 || rep.Responses > 6 || rep.Interrupted {
		t.Errorf("responses %d, interrupted %v; want 3 to 6, false", rep.Responses, rep.Interrupted)
	}
	if rep.Duration != 500*time.Millisecond || rep.Planned != 0 {
		t.Errorf("report says duration %s, planned %d", rep.Duration, rep.Planned)
	}
}

func TestDefaultDuration(t *testing.T) {
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	want := Options{URL: DefaultURL, Concurrency: 10, Duration: 10 * time.Second, Timeout: 10 * time.Second}
	if o != want {
		t.Errorf("defaults %+v, want %+v", o, want)
	}
}

func TestInterrupted(t *testing.T) {
	srv, _ := server(t, &roundRobin{names: []string{"w1"}})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()

	start := time.Now()
	rep, err := Run(ctx, Options{URL: srv.URL, Concurrency: 2, Duration: time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Generous for a loaded machine, and far short of the 1m duration.
	if wall := time.Since(start); wall > 10*time.Second {
		t.Errorf("stopping took %s after the context ended at 300ms; the run was for 1m", wall)
	}
	if !rep.Interrupted || rep.Requests == 0 || rep.Errors != 0 {
		t.Errorf("interrupted %v, requests %d, errors %d; want true, >0, 0", rep.Interrupted, rep.Requests, rep.Errors)
	}
}

func TestRateRoughlyRespected(t *testing.T) {
	srv, _ := server(t, &roundRobin{names: []string{"w1"}})

	t.Run("duration", func(t *testing.T) {
		rep := mustRun(t, Options{URL: srv.URL, Concurrency: 4, Duration: time.Second, Rate: 100})
		// 100 in a second; loose bounds for a noisy 2-core machine.
		if rep.Requests < 60 || rep.Requests > 130 {
			t.Errorf("%d requests in 1s at --rate 100", rep.Requests)
		}
	})
	t.Run("requests", func(t *testing.T) {
		rep := mustRun(t, Options{URL: srv.URL, Concurrency: 4, Requests: 30, Rate: 50})
		// The first request goes at once, the other 29 one every 20ms.
		if rep.Requests != 30 || rep.Elapsed < 500*time.Millisecond || rep.Elapsed > 3*time.Second {
			t.Errorf("%d requests in %s at --rate 50; want 30 in about 580ms", rep.Requests, rep.Elapsed)
		}
	})
}

func TestConnections(t *testing.T) {
	for _, tt := range []struct {
		noKeepAlive bool
		want        int64
	}{
		{false, 5},  // one connection per worker
		{true, 100}, // one per request
	} {
		t.Run(fmt.Sprintf("NoKeepAlive=%v", tt.noKeepAlive), func(t *testing.T) {
			var closing atomic.Int64
			// Each connection's first request waits until five are open, so
			// every worker is running before the budget of 100 is spent: a
			// worker scheduled late would otherwise find none left and
			// rightly never dial.
			var mu sync.Mutex
			seen := map[string]bool{}
			allOpen := make(chan struct{})
			srv, ln := server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Close {
					closing.Add(1)
				}
				mu.Lock()
				first := !seen[r.RemoteAddr]
				seen[r.RemoteAddr] = true
				if first && len(seen) == 5 {
					close(allOpen)
				}
				mu.Unlock()
				if first {
					select {
					case <-allOpen:
					case <-time.After(10 * time.Second):
					}
				}
				io.WriteString(w, workerBody("w1"))
			}))
			rep := mustRun(t, Options{URL: srv.URL, Concurrency: 5, Requests: 100, NoKeepAlive: tt.noKeepAlive})
			if rep.Responses != 100 {
				t.Fatalf("%d responses, want 100", rep.Responses)
			}
			if n := ln.accepted.Load(); n != tt.want {
				t.Errorf("%d connections accepted, want %d", n, tt.want)
			}
			wantClosing := int64(0)
			if tt.noKeepAlive {
				wantClosing = 100
			}
			if n := closing.Load(); n != wantClosing {
				t.Errorf("%d requests asked for Connection: close, want %d", n, wantClosing)
			}
			if rep.KeepAlive == tt.noKeepAlive {
				t.Errorf("report says keep-alive %v", rep.KeepAlive)
			}
		})
	}
}

func TestJSONMatchesText(t *testing.T) {
	rr := &roundRobin{names: []string{"nethttp", "gin"}}
	srv, _ := server(t, rr)
	rep := mustRun(t, Options{URL: srv.URL + "/work", Concurrency: 3, Requests: 200})

	var js, text bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}

	// The JSON is the report: decoding it gives the same values back.
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("%v\n%s", err, js.String())
	}
	if !reflect.DeepEqual(&back, rep) {
		t.Errorf("JSON round trip differs:\n got %+v\nwant %+v", back, *rep)
	}
	// The keys users script against.
	var raw map[string]any
	if err := json.Unmarshal(js.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"url", "requests", "responses", "errors", "requests_per_second", "elapsed_s", "latency_ms", "status_codes", "errors_by_kind", "backends"} {
		if _, ok := raw[key]; !ok {
			t.Errorf("JSON has no %q: %s", key, js.String())
		}
	}
	if got := raw["status_codes"].(map[string]any)["200"]; got != 200.0 {
		t.Errorf(`status_codes["200"] = %v, want 200`, got)
	}
	if p50 := raw["latency_ms"].(map[string]any)["p50"].(float64); p50 != float64(rep.Latency.P50)/1e6 {
		t.Errorf("latency_ms.p50 = %v, report p50 %s", p50, rep.Latency.P50)
	}

	// The text shows the same numbers.
	for _, want := range []string{
		"Target " + srv.URL + "/work",
		fmt.Sprintf("Requests %d (%.1f req/s): 200 responses, 0 errors", 200, rep.RequestsPerSecond),
		"p50 " + fmtDuration(rep.Latency.P50),
		"p99.9 " + fmtDuration(rep.Latency.P999),
		"Status codes 200: 200",
		"Errors none",
	} {
		re := regexp.MustCompile(strings.ReplaceAll(regexp.QuoteMeta(want), " ", `\s+`))
		if !re.MatchString(text.String()) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	for _, b := range rep.Backends {
		row := regexp.MustCompile(`(?m)^\s+` + b.Service + `\s+100\s+50\.0%\s+` + regexp.QuoteMeta(fmtDuration(b.Latency.P50)) + `\s+` + regexp.QuoteMeta(fmtDuration(b.Latency.P99)) + `\s*$`)
		if !row.MatchString(text.String()) {
			t.Errorf("text report has no row for %+v:\n%s", b, text.String())
		}
	}
}

func TestProgressPlain(t *testing.T) {
	srv, _ := server(t, &roundRobin{names: []string{"w1"}})
	var progress bytes.Buffer // written by Run's progress goroutine only, read after Run
	rep, err := Run(context.Background(), Options{URL: srv.URL, Concurrency: 2, Duration: 1300 * time.Millisecond}, &progress)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(progress.String()), "\n")
	line := regexp.MustCompile(`^bench: 1(\.\d)?s of 1\.3s, (\d+) requests \(\d+ req/s now\), 0 errors$`)
	if len(lines) != 1 || !line.MatchString(lines[0]) {
		t.Fatalf("progress:\n%s\nwant one line matching %s", progress.String(), line)
	}
	var n int64
	fmt.Sscan(line.FindStringSubmatch(lines[0])[2], &n)
	if n == 0 || n > rep.Requests {
		t.Errorf("progress said %d requests of %d", n, rep.Requests)
	}

	progress.Reset()
	if _, err := Run(context.Background(), Options{URL: srv.URL, Concurrency: 2, Requests: 20}, &progress); err != nil {
		t.Fatal(err)
	}
	if progress.Len() != 0 { // done before the first tick
		t.Errorf("progress for a short run: %q", progress.String())
	}
}

func TestProgressPlainRequests(t *testing.T) {
	var buf bytes.Buffer
	v := &plainView{w: &buf, o: Options{Requests: 1000}}
	v.update(time.Second, 300, 2)
	v.update(2*time.Second, 700, 3)
	want := "bench: 300/1000 requests (300 req/s now), 2 errors\nbench: 700/1000 requests (400 req/s now), 3 errors\n"
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

func TestProgressBar(t *testing.T) {
	for _, o := range []Options{{Requests: 1000}, {Duration: 10 * time.Second}} {
		var buf bytes.Buffer
		b := newBarView(&buf, o)
		b.update(time.Second, 400, 1)
		b.update(2*time.Second, 800, 1)
		b.finish()
		out := buf.String()
		if !strings.Contains(out, "1 errors") || !strings.Contains(out, "%") {
			t.Errorf("bar for %+v: %q", o, out)
		}
		if !strings.HasSuffix(out, "\r") {
			t.Errorf("bar for %+v not cleared at the end: %q", o, out)
		}
	}
}

func TestOptionErrors(t *testing.T) {
	for _, tt := range []struct {
		o      Options
		option string
	}{
		{Options{URL: "ftp://127.0.0.1/"}, "url"},
		{Options{URL: "127.0.0.1:50501"}, "url"},
		{Options{URL: "http://"}, "url"},
		{Options{URL: "http://[::1"}, "url"},
		{Options{Concurrency: -1}, "concurrency"},
		{Options{Duration: -time.Second}, "duration"},
		{Options{Requests: -5}, "requests"},
		{Options{Duration: time.Second, Requests: 5}, "duration"},
		{Options{Rate: -1}, "rate"},
		{Options{Rate: math.NaN()}, "rate"},
		{Options{Rate: math.Inf(1)}, "rate"},
		{Options{Timeout: -time.Second}, "timeout"},
	} {
		_, err := Run(context.Background(), tt.o, nil)
		var oe *OptionError
		if !errors.As(err, &oe) || oe.Option != tt.option {
			t.Errorf("Run(%+v) = %v, want an OptionError for %s", tt.o, err, tt.option)
		}
	}
	_, err := Run(context.Background(), Options{Duration: time.Second, Requests: 5}, nil)
	if !errors.Is(err, ErrDurationAndRequests) {
		t.Errorf("both bounds: %v", err)
	}
}

func BenchmarkRequest(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, workerBody("w1"))
	}))
	defer srv.Close()
	b.ReportAllocs()
	b.ResetTimer()
	rep, err := Run(context.Background(), Options{URL: srv.URL, Concurrency: 4, Requests: b.N}, nil)
	if err != nil || rep.Responses != int64(b.N) {
		b.Fatal(err, rep.Responses)
	}
}

// oneResponsePerConn serves one response on each connection and then closes
// it without saying so (no Connection: close), like a server whose idle
// timeout fired between two requests.
func oneResponsePerConn(t *testing.T) (url string, accepted *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int64)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			wg.Go(func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				body := workerBody("w1")
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			})
		}
	})
	return "http://" + ln.Addr().String() + "/work", accepted
}

func TestServerClosesKeptAliveConnection(t *testing.T) {
	url, accepted := oneResponsePerConn(t)
	rep := mustRun(t, Options{URL: url, Concurrency: 2, Requests: 20})
	if rep.Responses != 20 || rep.Errors != 0 {
		t.Fatalf("responses %d, errors %d %+v; a request on a connection the server closed is sent again", rep.Responses, rep.Errors, rep.ErrorKinds)
	}
	if n := accepted.Load(); n < 20 {
		t.Errorf("%d connections for 20 requests, one each", n)
	}
}

func TestConnectionCloseFromServer(t *testing.T) {
	var n atomic.Int64
	srv, ln := server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%5 == 0 {
			w.Header().Set("Connection", "close")
		}
		io.WriteString(w, workerBody("w1"))
	}))
	rep := mustRun(t, Options{URL: srv.URL, Concurrency: 1, Requests: 20})
	if rep.Responses != 20 || rep.Errors != 0 {
		t.Fatalf("responses %d, errors %d %+v", rep.Responses, rep.Errors, rep.ErrorKinds)
	}
	if got := ln.accepted.Load(); got != 4 {
		t.Errorf("%d connections, want 4: a new one after each Connection: close", got)
	}
}

func TestChunkedBody(t *testing.T) {
	srv, _ := server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"status":true,`)
		w.(http.Flusher).Flush() // no Content-Length: chunked
		io.WriteString(w, `"service":"chunky","duration_ms":0}`)
	}))
	rep := mustRun(t, Options{URL: srv.URL, Concurrency: 2, Requests: 10})
	if backendCounts(rep)["chunky"] != 10 {
		t.Errorf("backends %v, want chunky: 10", backendCounts(rep))
	}
}

func TestHTTPS(t *testing.T) {
	srv := httptest.NewUnstartedServer(&roundRobin{names: []string{"tls"}})
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the rejected handshakes below
	srv.StartTLS()
	t.Cleanup(srv.Close)

	// Run checks certificates: httptest's is not trusted.
	rep := mustRun(t, Options{URL: srv.URL, Concurrency: 1, Requests: 2})
	if rep.Errors != 2 || rep.ErrorKinds[0].Kind != ErrOther || !strings.Contains(rep.ErrorKinds[0].Example, "certificate") {
		t.Errorf("untrusted certificate: errors %+v", rep.ErrorKinds)
	}

	// Trusting it, a client keeps one TLS connection for its requests.
	o, err := Options{URL: srv.URL}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	tg, err := newTarget(o)
	if err != nil {
		t.Fatal(err)
	}
	tg.tls.RootCAs = srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	c := client{t: tg, timeout: time.Second}
	defer c.close()
	buf := make([]byte, 16)
	for range 3 {
		status, n, err := c.do(context.Background(), &buf)
		if err != nil || status != 200 || serviceOf(buf[:n]) != "tls" {
			t.Fatalf("status %d, body %q, err %v", status, buf[:n], err)
		}
	}
	if !c.reused {
		t.Error("the TLS connection was not kept alive")
	}
}

func TestFmtDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                         "0ns",
		999:                       "999ns",
		1500:                      "1.500µs",
		412345:                    "412.3µs",
		2210 * time.Microsecond:   "2.210ms",
		17960 * time.Microsecond:  "17.96ms",
		170660 * time.Microsecond: "170.7ms",
		5002 * time.Millisecond:   "5.002s",
		125 * time.Second:         "125.0s",
		3 * time.Hour:             "10800s",
	} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%d) = %q, want %q", d, got, want)
		}
	}
}

func TestNoErrorsAtTheEndOfARun(t *testing.T) {
	// When the time is up, the run's context may not say so yet (its timer
	// fires a little later) while dials already fail against its deadline:
	// those are not errors either.
	srv, _ := server(t, &roundRobin{names: []string{"w1"}})
	for range 5 {
		rep := mustRun(t, Options{URL: srv.URL, Concurrency: 3, Duration: 200 * time.Millisecond, NoKeepAlive: true})
		if rep.Errors != 0 || rep.Responses == 0 {
			t.Fatalf("responses %d, errors %d %+v", rep.Responses, rep.Errors, rep.ErrorKinds)
		}
	}
}
