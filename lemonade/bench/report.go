package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Report is what a run did. In JSON, durations are float seconds and
// latencies float milliseconds, with the unit in the key.
type Report struct {
	// The load, as run (defaults filled in, Concurrency capped at Requests).
	URL         string
	Concurrency int
	KeepAlive   bool
	Rate        float64       // requested cap in requests/s; 0: none
	Timeout     time.Duration // per request
	Duration    time.Duration // requested duration; 0 when bounded by Requests
	Planned     int           // requested number of requests; 0 when bounded by Duration

	Elapsed     time.Duration // from the first request started to the last finished
	Interrupted bool          // stopped early by the caller's context (Ctrl-C)

	Requests          int64   // finished: Responses + Errors
	Responses         int64   // requests that got a whole response, any status
	Errors            int64   // requests that got no whole response
	RequestsPerSecond float64 // Requests / Elapsed

	Latency     Latency          // of all responses, from sending the request to the last body byte
	StatusCodes map[int]int64    // responses by HTTP status
	ErrorKinds  []ErrorCount     // errors by kind, in the order of the ErrorKind constants; only kinds seen
	Backends    []BackendSummary // responses by "service", most first; shares add up to 100
}

// Latency summarises a latency distribution. Percentiles come from HDR
// histograms, exact to 3 significant digits.
type Latency struct {
	P50, P90, P99, P999, Max, Mean time.Duration
}

// ErrorCount is the number of failed requests of one kind.
type ErrorCount struct {
	Kind    ErrorKind
	Count   int64
	Example string // the first error message of this kind
}

// BackendSummary is what one backend (one "service" name) answered.
type BackendSummary struct {
	Service string
	Count   int64
	Share   float64 // percent of Responses
	Latency Latency
}

func latencyOf(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		P50:  time.Duration(h.ValueAtQuantile(50)),
		P90:  time.Duration(h.ValueAtQuantile(90)),
		P99:  time.Duration(h.ValueAtQuantile(99)),
		P999: time.Duration(h.ValueAtQuantile(99.9)),
		Max:  time.Duration(h.Max()),
		Mean: time.Duration(h.Mean()),
	}
}

// report merges the shards.
func (r *run) report(elapsed time.Duration, interrupted bool) *Report {
	rep := &Report{
		URL:         r.o.URL,
		Concurrency: r.o.Concurrency,
		KeepAlive:   !r.o.NoKeepAlive,
		Rate:        r.o.Rate,
		Timeout:     r.o.Timeout,
		Duration:    r.o.Duration,
		Planned:     r.o.Requests,
		Elapsed:     elapsed,
		Interrupted: interrupted,
		StatusCodes: make(map[int]int64),
		ErrorKinds:  []ErrorCount{},
		Backends:    []BackendSummary{},
	}
	all := newHistogram(r.highest)
	backends := make(map[string]*hdrhistogram.Histogram)
	var errs [len(errorKinds)]ErrorCount
	for _, s := range r.shards {
		all.Merge(s.latency)
		for code, n := range s.status {
			rep.StatusCodes[code] += n
		}
		for k, n := range s.errs {
			errs[k].Count += n
			if errs[k].Example == "" {
				errs[k].Example = s.examples[k]
			}
		}
		for name, h := range s.backends {
			if backends[name] == nil {
				backends[name] = newHistogram(r.highest)
			}
			backends[name].Merge(h)
		}
	}
	rep.Responses = all.TotalCount()
	rep.Latency = latencyOf(all)
	for k, e := range errs {
		if e.Count > 0 {
			e.Kind = errorKinds[k]
			rep.ErrorKinds = append(rep.ErrorKinds, e)
			rep.Errors += e.Count
		}
	}
	rep.Requests = rep.Responses + rep.Errors
	if elapsed > 0 {
		rep.RequestsPerSecond = float64(rep.Requests) / elapsed.Seconds()
	}

	names := make([]string, 0, len(backends))
	for name := range backends {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(backends[b].TotalCount(), backends[a].TotalCount()), strings.Compare(a, b))
	})
	// Each shard caps its own names; the union can still be too long.
	if len(names) > maxBackends {
		other := backends[Other]
		if other == nil {
			other = newHistogram(r.highest)
		}
		kept := names[:0]
		for i, name := range names {
			if i < maxBackends-1 || name == Other {
				kept = append(kept, name)
			} else {
				other.Merge(backends[name])
			}
		}
		backends[Other] = other
		names = kept
		if !slices.Contains(names, Other) {
			names = append(names, Other)
		}
	}
	for _, name := range names {
		h := backends[name]
		rep.Backends = append(rep.Backends, BackendSummary{
			Service: name,
			Count:   h.TotalCount(),
			Share:   100 * float64(h.TotalCount()) / float64(rep.Responses),
			Latency: latencyOf(h),
		})
	}
	return rep
}

// WriteText writes the report for people: a header, throughput, latency,
// status codes, errors by kind and the backend table.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }

	p("Target\t%s\n", r.URL)
	conn := "keep-alive"
	if !r.KeepAlive {
		conn = "a new connection per request"
	}
	pace := "as fast as possible"
	if r.Rate > 0 {
		pace = fmt.Sprintf("at most %s req/s", trimFloat(r.Rate))
	}
	bound := fmt.Sprintf("for %s", r.Duration)
	if r.Planned > 0 {
		bound = fmt.Sprintf("%d requests", r.Planned)
	}
	p("Load\t%d workers, %s, %s, %s (timeout %s)\n", r.Concurrency, conn, pace, bound, r.Timeout)
	stopped := ""
	if r.Interrupted {
		stopped = " (interrupted: stopped early)"
	}
	p("Elapsed\t%s%s\n", fmtDuration(r.Elapsed), stopped)
	p("Requests\t%d (%.1f req/s): %d responses, %d errors\n", r.Requests, r.RequestsPerSecond, r.Responses, r.Errors)
	if r.Responses > 0 {
		l := r.Latency
		p("Latency\tp50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s)\n",
			fmtDuration(l.P50), fmtDuration(l.P90), fmtDuration(l.P99), fmtDuration(l.P999), fmtDuration(l.Max), fmtDuration(l.Mean))
	} else {
		p("Latency\t- (no responses)\n")
	}
	codes := make([]int, 0, len(r.StatusCodes))
	for code := range r.StatusCodes {
		codes = append(codes, code)
	}
	slices.Sort(codes)
	var sb strings.Builder
	for i, code := range codes {
		if i > 0 {
			sb.WriteString("  ")
		}
		fmt.Fprintf(&sb, "%d: %d", code, r.StatusCodes[code])
	}
	if len(codes) == 0 {
		sb.WriteString("-")
	}
	p("Status codes\t%s\n", sb.String())
	if len(r.ErrorKinds) == 0 {
		p("Errors\tnone\n")
	}
	for i, e := range r.ErrorKinds {
		label := "Errors"
		if i > 0 {
			label = ""
		}
		p("%s\t%s: %d  (e.g. %s)\n", label, e.Kind.label(), e.Count, e.Example)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if len(r.Backends) == 0 {
		return nil
	}
	if _, err := fmt.Fprintf(w, "\nBackends (the \"service\" field of each response)\n"); err != nil {
		return err
	}
	// Numbers align right; names align left, padded here to one width.
	width := len("SERVICE")
	for _, b := range r.Backends {
		width = max(width, len(b.Service))
	}
	tw = tabwriter.NewWriter(w, 0, 0, 3, ' ', tabwriter.AlignRight)
	p("%-*s\tREQUESTS\tSHARE\tP50\tP99\t\n", width, "SERVICE")
	for _, b := range r.Backends {
		p("%-*s\t%d\t%.1f%%\t%s\t%s\t\n", width, b.Service, b.Count, b.Share, fmtDuration(b.Latency.P50), fmtDuration(b.Latency.P99))
	}
	return tw.Flush()
}

// fmtDuration shows d with four significant digits in a unit that keeps
// the trailing zeros, so that columns line up: 412.3µs, 2.210ms, 17.96ms, 5.002s.
func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d)
	case d < time.Millisecond:
		return fourDigits(float64(d)/float64(time.Microsecond)) + "µs"
	case d < time.Second:
		return fourDigits(float64(d)/float64(time.Millisecond)) + "ms"
	}
	return fourDigits(d.Seconds()) + "s"
}

func fourDigits(v float64) string {
	switch {
	case v < 10:
		return fmt.Sprintf("%.3f", v)
	case v < 100:
		return fmt.Sprintf("%.2f", v)
	case v < 1000:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func trimFloat(f float64) string { return strings.TrimSuffix(fmt.Sprintf("%.2f", f), ".00") }

// WriteJSON writes the report as one indented JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// The JSON shapes: explicit units in the keys, durations as float numbers.
type (
	reportJSON struct {
		URL               string        `json:"url"`
		Concurrency       int           `json:"concurrency"`
		KeepAlive         bool          `json:"keep_alive"`
		Rate              float64       `json:"rate_limit"`
		Timeout           float64       `json:"timeout_s"`
		Duration          float64       `json:"duration_s"`
		Planned           int           `json:"planned_requests"`
		Elapsed           float64       `json:"elapsed_s"`
		Interrupted       bool          `json:"interrupted"`
		Requests          int64         `json:"requests"`
		Responses         int64         `json:"responses"`
		Errors            int64         `json:"errors"`
		RequestsPerSecond float64       `json:"requests_per_second"`
		Latency           latencyJSON   `json:"latency_ms"`
		StatusCodes       map[int]int64 `json:"status_codes"`
		ErrorKinds        []errorJSON   `json:"errors_by_kind"`
		Backends          []backendJSON `json:"backends"`
	}
	latencyJSON struct {
		P50  float64 `json:"p50"`
		P90  float64 `json:"p90"`
		P99  float64 `json:"p99"`
		P999 float64 `json:"p99_9"`
		Max  float64 `json:"max"`
		Mean float64 `json:"mean"`
	}
	errorJSON struct {
		Kind    ErrorKind `json:"kind"`
		Count   int64     `json:"count"`
		Example string    `json:"example"`
	}
	backendJSON struct {
		Service string      `json:"service"`
		Count   int64       `json:"count"`
		Share   float64     `json:"share_pct"`
		Latency latencyJSON `json:"latency_ms"`
	}
)

func ms(d time.Duration) float64          { return float64(d) / float64(time.Millisecond) }
func fromMs(f float64) time.Duration      { return time.Duration(math.Round(f * float64(time.Millisecond))) }
func fromSeconds(f float64) time.Duration { return time.Duration(math.Round(f * float64(time.Second))) }

func (l Latency) toJSON() latencyJSON {
	return latencyJSON{P50: ms(l.P50), P90: ms(l.P90), P99: ms(l.P99), P999: ms(l.P999), Max: ms(l.Max), Mean: ms(l.Mean)}
}

func (l latencyJSON) latency() Latency {
	return Latency{P50: fromMs(l.P50), P90: fromMs(l.P90), P99: fromMs(l.P99), P999: fromMs(l.P999), Max: fromMs(l.Max), Mean: fromMs(l.Mean)}
}

// MarshalJSON implements json.Marshaler.
func (r Report) MarshalJSON() ([]byte, error) {
	j := reportJSON{
		URL: r.URL, Concurrency: r.Concurrency, KeepAlive: r.KeepAlive, Rate: r.Rate,
		Timeout: r.Timeout.Seconds(), Duration: r.Duration.Seconds(), Planned: r.Planned,
		Elapsed: r.Elapsed.Seconds(), Interrupted: r.Interrupted,
		Requests: r.Requests, Responses: r.Responses, Errors: r.Errors, RequestsPerSecond: r.RequestsPerSecond,
		Latency: r.Latency.toJSON(), StatusCodes: r.StatusCodes,
		ErrorKinds: make([]errorJSON, 0, len(r.ErrorKinds)), Backends: make([]backendJSON, 0, len(r.Backends)),
	}
	if j.StatusCodes == nil {
		j.StatusCodes = map[int]int64{}
	}
	for _, e := range r.ErrorKinds {
		j.ErrorKinds = append(j.ErrorKinds, errorJSON(e))
	}
	for _, b := range r.Backends {
		j.Backends = append(j.Backends, backendJSON{Service: b.Service, Count: b.Count, Share: b.Share, Latency: b.Latency.toJSON()})
	}
	return json.Marshal(j)
}

// UnmarshalJSON implements json.Unmarshaler, the inverse of MarshalJSON.
func (r *Report) UnmarshalJSON(data []byte) error {
	var j reportJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*r = Report{
		URL: j.URL, Concurrency: j.Concurrency, KeepAlive: j.KeepAlive, Rate: j.Rate,
		Timeout: fromSeconds(j.Timeout), Duration: fromSeconds(j.Duration), Planned: j.Planned,
		Elapsed: fromSeconds(j.Elapsed), Interrupted: j.Interrupted,
		Requests: j.Requests, Responses: j.Responses, Errors: j.Errors, RequestsPerSecond: j.RequestsPerSecond,
		Latency: j.Latency.latency(), StatusCodes: j.StatusCodes,
		ErrorKinds: make([]ErrorCount, 0, len(j.ErrorKinds)), Backends: make([]BackendSummary, 0, len(j.Backends)),
	}
	for _, e := range j.ErrorKinds {
		r.ErrorKinds = append(r.ErrorKinds, ErrorCount(e))
	}
	for _, b := range j.Backends {
		r.Backends = append(r.Backends, BackendSummary{Service: b.Service, Count: b.Count, Share: b.Share, Latency: b.Latency.latency()})
	}
	return nil
}
