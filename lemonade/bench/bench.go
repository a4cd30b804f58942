// Package bench generates HTTP load against one URL — by default the
// balancer's /work endpoint — and reports what happened: throughput, latency
// percentiles, status codes, errors by kind and, read from the "service"
// field that the demo workers put in every /work response, how the responses
// spread across the backends, so a user can see what a balancing strategy
// did.
//
// Each worker goroutine owns one http.Transport and so one connection (or a
// new one per request with Options.NoKeepAlive). Workers record into a few
// mutex-guarded shards of HDR histograms and counters, merged once at the
// end; the only state shared on every request is a pair of atomic counters
// that the progress display reads.
package bench

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/time/rate"
)

// Names in the backend table that are not services.
const (
	// Unknown counts responses without a parsable, non-empty "service" field.
	Unknown = "(unknown)"
	// Other counts responses from services beyond the first maxBackends
	// distinct names, so a server that makes up names cannot eat memory.
	Other = "(other)"
)

const (
	maxBody     = 64 << 10 // bytes of a body read to find its service; the rest is discarded
	maxBackends = 64       // distinct service names tracked per shard and in the report
	userAgent   = "lemonade-bench"
)

// run is the state of one Run shared by its workers.
type run struct {
	o       Options
	limiter *rate.Limiter // nil: as fast as possible
	budget  atomic.Int64  // requests left to start, with Options.Requests
	// done and failed count finished requests (errors included) and the
	// failed ones, for the progress display.
	done, failed atomic.Int64
	highest      int64 // largest latency the histograms hold, in ns
	shards       []*shard
}

// Run generates the load o describes until its bound (Duration or Requests)
// is reached or ctx ends, and returns the report of what ran. Progress goes
// to progress (nil: none): a bar when it is a terminal, otherwise a plain
// line about every second. The error is non-nil only for options that cannot
// be used (an *OptionError); a run stopped by ctx still returns its report,
// marked Interrupted.
func Run(ctx context.Context, o Options, progress io.Writer) (*Report, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	template, err := http.NewRequest(http.MethodGet, o.URL, nil)
	if err != nil {
		return nil, &OptionError{Option: "url", Err: err}
	}
	template.Header.Set("User-Agent", userAgent)
	template.Close = o.NoKeepAlive

	r := &run{o: o, highest: int64(o.Timeout + time.Second)}
	if o.Rate > 0 {
		r.limiter = rate.NewLimiter(rate.Limit(o.Rate), 1)
	}
	r.budget.Store(int64(o.Requests))
	// A few shards keep workers from queueing on one lock without giving
	// every worker its own set of histograms (~130 KiB each).
	r.shards = make([]*shard, min(o.Concurrency, 2*runtime.GOMAXPROCS(0)))
	for i := range r.shards {
		r.shards[i] = newShard(r.highest)
	}

	runCtx, cancel := context.WithCancel(ctx)
	if o.Duration > 0 {
		runCtx, cancel = context.WithTimeout(ctx, o.Duration)
	}
	defer cancel()

	start := time.Now()
	stopProgress := startProgress(progress, r, start)
	workers := make([]*worker, o.Concurrency)
	var wg sync.WaitGroup
	for i := range workers {
		w := newWorker(r, r.shards[i%len(r.shards)], template)
		workers[i] = w
		wg.Go(func() { w.loop(runCtx) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopProgress()
	for _, w := range workers {
		w.transport.CloseIdleConnections()
	}
	return r.report(elapsed, ctx.Err() != nil), nil
}

// shard is one set of recorders; workers share it under its mutex.
type shard struct {
	mu       sync.Mutex
	latency  *hdrhistogram.Histogram // every response, any status
	status   map[int]int64
	errs     [len(errorKinds)]int64
	examples [len(errorKinds)]string // the first error message of each kind
	backends map[string]*hdrhistogram.Histogram
	highest  int64
}

func newShard(highest int64) *shard {
	return &shard{
		latency:  newHistogram(highest, 3),
		status:   make(map[int]int64),
		backends: make(map[string]*hdrhistogram.Histogram),
		highest:  highest,
	}
}

// newHistogram records nanoseconds from 1µs to highest with sigfigs
// significant digits.
func newHistogram(highest int64, sigfigs int) *hdrhistogram.Histogram {
	return hdrhistogram.New(int64(time.Microsecond), highest, sigfigs)
}

func (s *shard) recordResponse(status int, service string, latency time.Duration) {
	v := min(int64(latency), s.highest)
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.latency.RecordValue(v) // in range: clamped above
	s.status[status]++
	h := s.backends[service]
	if h == nil {
		if len(s.backends) >= maxBackends {
			service = Other
			h = s.backends[Other]
		}
		if h == nil {
			// Two digits are plenty for the per-backend p50/p99 and keep
			// each histogram near 20 KiB.
			h = newHistogram(s.highest, 2)
			s.backends[service] = h
		}
	}
	_ = h.RecordValue(v)
}

func (s *shard) recordError(err error) {
	k := classify(err)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs[k]++
	if s.examples[k] == "" {
		s.examples[k] = err.Error()
	}
}

// worker sends requests one after another on its own transport.
type worker struct {
	r         *run
	shard     *shard
	transport *http.Transport
	template  *http.Request
	buf       []byte
}

func newWorker(r *run, s *shard, template *http.Request) *worker {
	dialer := &net.Dialer{Timeout: r.o.Timeout}
	return &worker{
		r:     r,
		shard: s,
		transport: &http.Transport{
			// No Proxy: the load goes where the user points it, whatever
			// HTTP_PROXY says.
			DialContext:         dialer.DialContext,
			TLSHandshakeTimeout: r.o.Timeout,
			DisableKeepAlives:   r.o.NoKeepAlive,
			DisableCompression:  true,
			MaxIdleConns:        1,
			MaxIdleConnsPerHost: 1,
		},
		template: template,
		buf:      make([]byte, 4096),
	}
}

func (w *worker) loop(ctx context.Context) {
	bounded := w.r.o.Requests > 0
	for ctx.Err() == nil {
		if bounded && w.r.budget.Add(-1) < 0 {
			return
		}
		if w.r.limiter != nil && w.r.limiter.Wait(ctx) != nil {
			return // ctx ended, or would before the next slot
		}
		w.request(ctx)
	}
}

// request sends one request and records its outcome, unless ctx ended under
// it: a request cut short by the end of the run is not a failure.
func (w *worker) request(ctx context.Context) {
	reqCtx, cancel := context.WithTimeout(ctx, w.r.o.Timeout)
	defer cancel()
	start := time.Now()
	resp, err := w.transport.RoundTrip(w.template.WithContext(reqCtx))
	var n int
	if err == nil {
		n, err = w.readBody(resp.Body)
		resp.Body.Close()
	}
	latency := time.Since(start)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		w.r.done.Add(1)
		w.r.failed.Add(1)
		w.shard.recordError(err)
		return
	}
	w.r.done.Add(1)
	w.shard.recordResponse(resp.StatusCode, serviceOf(w.buf[:n]), latency)
}

// readBody reads the whole body, keeping up to maxBody bytes in w.buf, so
// that the connection can be reused.
func (w *worker) readBody(body io.Reader) (int, error) {
	n := 0
	for {
		if n == len(w.buf) {
			if len(w.buf) >= maxBody {
				_, err := io.Copy(io.Discard, body)
				return n, err
			}
			w.buf = append(w.buf, make([]byte, len(w.buf))...)
		}
		m, err := body.Read(w.buf[n:])
		n += m
		if err == io.EOF { // the io.Reader contract: EOF itself, never wrapped
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// serviceOf returns the "service" field of a JSON body, or Unknown.
func serviceOf(body []byte) string {
	var v struct {
		Service string `json:"service"`
	}
	if json.Unmarshal(body, &v) != nil || v.Service == "" {
		return Unknown
	}
	return v.Service
}
