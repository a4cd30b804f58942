// Package bench generates HTTP load against one URL — by default the
// balancer's /work endpoint — and reports what happened: throughput, latency
// percentiles, status codes, errors by kind and, read from the "service"
// field that the demo workers put in every /work response, how the responses
// spread across the backends, so a user can see what a balancing strategy
// did.
//
// Each worker goroutine owns one connection (or a new one per request with
// Options.NoKeepAlive) and sends its requests one after another. Workers
// record into a few mutex-guarded shards of HDR histograms and counters,
// merged once at the end; the only state shared on every request is a pair
// of atomic counters that the progress display reads.
package bench

import (
	"context"
	"encoding/json"
	"io"
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
	maxBackends = 32       // distinct service names tracked per shard and in the report
	maxShards   = 8        // recorder sets, whatever the number of CPUs
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
	t, err := newTarget(o)
	if err != nil {
		return nil, &OptionError{Option: "url", Err: err}
	}

	r := &run{o: o, highest: int64(o.Timeout + time.Second)}
	if o.Rate > 0 {
		r.limiter = rate.NewLimiter(rate.Limit(o.Rate), 1)
	}
	r.budget.Store(int64(o.Requests))
	// A few shards keep workers from queueing on one lock without giving
	// every worker its own set of histograms (~130 KiB each).
	r.shards = make([]*shard, min(o.Concurrency, 2*runtime.GOMAXPROCS(0), maxShards))
	for i := range r.shards {
		r.shards[i] = newShard(r.highest)
	}

	var runCtx context.Context
	var cancel context.CancelFunc
	if o.Duration > 0 {
		runCtx, cancel = context.WithTimeout(ctx, o.Duration)
	} else {
		runCtx, cancel = context.WithCancel(ctx)
	}
	defer cancel()

	start := time.Now()
	stopProgress := startProgress(progress, r, start)
	var wg sync.WaitGroup
	for i := range o.Concurrency {
		w := &worker{
			r:      r,
			shard:  r.shards[i%len(r.shards)],
			client: client{t: t, timeout: o.Timeout},
			buf:    make([]byte, 4096),
		}
		wg.Go(func() { w.loop(runCtx) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopProgress()
	return r.report(elapsed, ended(ctx)), nil
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
		latency:  newHistogram(highest),
		status:   make(map[int]int64),
		backends: make(map[string]*hdrhistogram.Histogram),
		highest:  highest,
	}
}

// newHistogram records nanoseconds from 1µs to highest with 3 significant
// digits.
func newHistogram(highest int64) *hdrhistogram.Histogram {
	return hdrhistogram.New(int64(time.Microsecond), highest, 3)
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
			h = newHistogram(s.highest)
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

// worker sends requests one after another on its own client.
type worker struct {
	r      *run
	shard  *shard
	client client
	buf    []byte
}

func (w *worker) loop(ctx context.Context) {
	defer w.client.close()
	bounded := w.r.o.Requests > 0
	for !ended(ctx) {
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
	start := time.Now()
	status, n, err := w.client.do(ctx, &w.buf)
	latency := time.Since(start)
	if err != nil {
		if ended(ctx) {
			return
		}
		w.r.done.Add(1)
		w.r.failed.Add(1)
		w.shard.recordError(err)
		return
	}
	w.r.done.Add(1)
	w.shard.recordResponse(status, serviceOf(w.buf[:n]), latency)
}

// ended tells whether the run is over. Its deadline may have passed a
// little before ctx says so (the timer that cancels ctx fires late), and I/O
// against that deadline already fails: such failures belong to the end of
// the run, not to the server.
func ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
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
