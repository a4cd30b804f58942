package backend

import (
	"math"
	"sync"
	"testing"
	"time"
)

func TestNewBackendIsUpWithWeightAtLeastOne(t *testing.T) {
	b := New(3, "web", "127.0.0.1:9", 0)
	if !b.Up() || !b.Eligible() || b.Weight() != 1 || b.Name() != "web" {
		t.Fatalf("new backend %+v", b.Snapshot())
	}
	b.SetWeight(7)
	b.SetName("api")
	if b.Weight() != 7 || b.Name() != "api" {
		t.Fatalf("in-place changes lost: %+v", b.Snapshot())
	}
	b.Drain()
	if b.Eligible() || !b.Draining() {
		t.Fatal("a draining backend must not be eligible")
	}
}

func TestSetUpCountsTransitionsOnlyOnChange(t *testing.T) {
	b := New(1, "a", "x:1", 1)
	if b.SetUp(true, "again") {
		t.Fatal("up → up reported as a change")
	}
	if !b.SetUp(false, "refused") || b.Eligible() {
		t.Fatal("up → down not applied")
	}
	if s := b.Snapshot(); s.Transitions != 1 || s.LastReason != "refused" {
		t.Fatalf("snapshot %+v", s)
	}
}

func TestLatencyAverageFollowsSamples(t *testing.T) {
	b := New(1, "a", "x:1", 1)
	if _, ok := b.Latency(); ok {
		t.Fatal("a fresh backend has no latency sample")
	}
	b.Connected(time.Millisecond) // seeds the average
	b.ObserveLatency(11 * time.Millisecond)
	lat, ok := b.Latency()
	want := float64(time.Millisecond) + ewmaAlpha*float64(10*time.Millisecond)
	if !ok || math.Abs(lat-want) > 1 {
		t.Fatalf("latency %v, want %v", time.Duration(lat), time.Duration(want))
	}
	if b.LatencyStdDev() <= 0 {
		t.Fatal("two different samples must give a positive deviation")
	}
	b.Connected(50 * time.Millisecond) // later connect times do not move it
	if lat2, _ := b.Latency(); lat2 != lat {
		t.Fatalf("connect time moved a measured average: %v → %v", lat, lat2)
	}
}

func TestErrorRateRisesWithFailuresAndFalls(t *testing.T) {
	b := New(1, "a", "x:1", 1)
	for range 10 {
		b.DialFailed(Passive{})
	}
	high := b.ErrorRate()
	for range 10 {
		b.Connected(time.Millisecond)
	}
	if high < 0.8 || b.ErrorRate() > 0.2 {
		t.Fatalf("error rate %v after failures, %v after successes", high, b.ErrorRate())
	}
}

func TestConcurrentCountersAreExact(t *testing.T) {
	b := New(1, "a", "x:1", 1)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				b.Acquire()
				b.Connected(time.Millisecond)
				b.AddBytes(3, 5)
				b.ObserveLatency(time.Millisecond)
				b.Release()
			}
		}()
	}
	wg.Wait()
	s := b.Snapshot()
	if s.Active != 0 || s.Total != 8000 || s.BytesIn != 24000 || s.BytesOut != 40000 {
		t.Fatalf("snapshot %+v", s)
	}
}
