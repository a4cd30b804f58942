package backend

import (
	"sync/atomic"
	"time"
)

// HistogramBounds are the upper bounds of a Histogram's buckets, from half a
// millisecond (a backend on the same host) to ten seconds (a slow one, or
// a health check near its timeout). A duration above the last bound falls
// in one more bucket (+Inf).
var HistogramBounds = [...]time.Duration{
	500 * time.Microsecond,
	time.Millisecond,
	2500 * time.Microsecond,
	5 * time.Millisecond,
	10 * time.Millisecond,
	25 * time.Millisecond,
	50 * time.Millisecond,
	100 * time.Millisecond,
	250 * time.Millisecond,
	500 * time.Millisecond,
	time.Second,
	2500 * time.Millisecond,
	5 * time.Second,
	10 * time.Second,
}

// Histogram counts durations in the buckets of HistogramBounds. Observe is
// two atomic adds after a scan of the bounds: no lock, no allocation, so the
// proxy's event loops can call it. The zero value is empty and ready; a
// Histogram must not be copied.
type Histogram struct {
	counts [len(HistogramBounds) + 1]atomic.Uint64 // per bucket (not cumulative); the last is +Inf
	sum    atomic.Int64                            // ns
}

// Observe counts d in its bucket: the first whose bound is at least d.
func (h *Histogram) Observe(d time.Duration) {
	i := 0
	for i < len(HistogramBounds) && d > HistogramBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// HistogramSnapshot is a point-in-time copy of a Histogram.
type HistogramSnapshot struct {
	// Counts holds the observations per bucket (not cumulative):
	// Counts[i] those above HistogramBounds[i-1] and at most
	// HistogramBounds[i]; the last, those above every bound.
	Counts [len(HistogramBounds) + 1]uint64 `json:"counts"`
	Sum    time.Duration                    `json:"sum_ns"` // of every observation
}

// Snapshot reads the counts. Buckets read while Observe runs may be one
// observation apart from the sum; each bucket is exact.
func (h *Histogram) Snapshot() HistogramSnapshot {
	var s HistogramSnapshot
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
	}
	s.Sum = time.Duration(h.sum.Load())
	return s
}

// Count is the number of observations.
func (s HistogramSnapshot) Count() uint64 {
	var n uint64
	for _, c := range s.Counts {
		n += c
	}
	return n
}

// Add adds o's observations to s (the same backend seen twice, say).
func (s *HistogramSnapshot) Add(o HistogramSnapshot) {
	for i, c := range o.Counts {
		s.Counts[i] += c
	}
	s.Sum += o.Sum
}
