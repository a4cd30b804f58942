package backend

import (
	"sync"
	"testing"
	"time"
)

func TestHistogramBucketsByUpperBound(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{
		0,                      // bucket 0
		500 * time.Microsecond, // bucket 0: a bound is inclusive
		501 * time.Microsecond, // bucket 1 (≤ 1ms)
		3 * time.Millisecond,   // bucket 3 (≤ 5ms)
		10 * time.Second,       // the last bound
		10*time.Second + 1,     // +Inf
		time.Hour,              // +Inf
	} {
		h.Observe(d)
	}
	s := h.Snapshot()
	last := len(HistogramBounds)
	want := map[int]uint64{0: 2, 1: 1, 3: 1, last - 1: 1, last: 2}
	for i, c := range s.Counts {
		if c != want[i] {
			t.Errorf("bucket %d (le %v): %d, want %d", i, bound(i), c, want[i])
		}
	}
	if s.Count() != 7 {
		t.Errorf("count %d, want 7", s.Count())
	}
	if want := 500*time.Microsecond + 501*time.Microsecond + 3*time.Millisecond + 20*time.Second + 1 + time.Hour; s.Sum != want {
		t.Errorf("sum %v, want %v", s.Sum, want)
	}
}

func bound(i int) any {
	if i == len(HistogramBounds) {
		return "+Inf"
	}
	return HistogramBounds[i]
}

func TestHistogramBoundsAscend(t *testing.T) {
	for i := 1; i < len(HistogramBounds); i++ {
		if HistogramBounds[i] <= HistogramBounds[i-1] {
			t.Fatalf("bound %d (%v) is not above the one before (%v)", i, HistogramBounds[i], HistogramBounds[i-1])
		}
	}
}

func TestHistogramSnapshotAdd(t *testing.T) {
	var a, b Histogram
	a.Observe(time.Millisecond)
	b.Observe(time.Millisecond)
	b.Observe(time.Minute)
	s := a.Snapshot()
	s.Add(b.Snapshot())
	if s.Count() != 3 || s.Counts[1] != 2 || s.Counts[len(HistogramBounds)] != 1 || s.Sum != 2*time.Millisecond+time.Minute {
		t.Fatalf("sum of snapshots %+v", s)
	}
}

func TestHistogramConcurrentObservationsAreExact(t *testing.T) {
	var h Histogram
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				h.Observe(2 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	if s := h.Snapshot(); s.Count() != 8000 || s.Counts[2] != 8000 || s.Sum != 16*time.Second {
		t.Fatalf("snapshot %+v", s)
	}
}

func TestObserveDoesNotAllocate(t *testing.T) {
	b := New(1, "a", "127.0.0.1:1", 1)
	if n := testing.AllocsPerRun(100, func() { b.ObserveLatency(3 * time.Millisecond) }); n != 0 {
		t.Fatalf("ObserveLatency allocates %v times", n)
	}
}

func TestResponseTimeHistogramHoldsOnlyMeasuredTimes(t *testing.T) {
	b := New(1, "a", "127.0.0.1:1", 1)
	b.Connected(time.Millisecond) // seeds the average, is no response time
	if s := b.Snapshot(); s.ResponseTime.Count() != 0 || s.Latency != time.Millisecond {
		t.Fatalf("after a connect: %+v", s)
	}
	b.ObserveLatency(20 * time.Millisecond)
	s := b.Snapshot()
	if s.ResponseTime.Count() != 1 || s.ResponseTime.Counts[5] != 1 || s.ResponseTime.Sum != 20*time.Millisecond {
		t.Fatalf("after a response: %+v", s.ResponseTime)
	}
}

func BenchmarkObserveLatency(b *testing.B) {
	be := New(1, "a", "127.0.0.1:1", 1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		be.ObserveLatency(time.Duration(i%20) * time.Millisecond)
	}
}
