package backend

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock makes sinceEpoch return what the test sets, for the rest of t.
func fakeClock(t *testing.T) *atomic.Int64 {
	t.Helper()
	var now atomic.Int64
	now.Store(int64(time.Hour)) // far from 0, so "never failed" cannot look recent
	saved := sinceEpoch
	sinceEpoch = now.Load
	t.Cleanup(func() { sinceEpoch = saved })
	return &now
}

func TestPassivePolicy(t *testing.T) {
	policy := Passive{MaxFails: 3, FailDuration: 10 * time.Second}
	cases := []struct {
		name   string
		p      Passive
		apart  time.Duration // between two failures
		fails  int
		downAt int // 1-based failure that first reports down; 0 = none does
	}{
		{"three within the window", policy, time.Second, 3, 3},
		{"three exactly the window apart", policy, 5 * time.Second, 3, 3},
		{"three spread wider than the window", policy, 6 * time.Second, 3, 0},
		{"a slow trickle never", policy, 6 * time.Second, 20, 0},
		{"two quick ones are not enough", policy, 0, 2, 0},
		{"max fails 1: the first", Passive{MaxFails: 1, FailDuration: time.Second}, 0, 1, 1},
		{"max fails 0: never", Passive{FailDuration: time.Hour}, 0, 100, 0},
		{"zero value: never", Passive{}, 0, 100, 0},
		{"the bound", Passive{MaxFails: MaxPassiveFails, FailDuration: time.Minute}, time.Second, MaxPassiveFails + 5, MaxPassiveFails},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			now := fakeClock(t)
			b := New(1, "a", "x:1", 1)
			firstDown := 0
			for i := 1; i <= tc.fails; i++ {
				if b.DialFailed(tc.p) && firstDown == 0 {
					firstDown = i
				}
				now.Add(int64(tc.apart))
			}
			if firstDown != tc.downAt {
				t.Fatalf("first down at failure %d, want %d", firstDown, tc.downAt)
			}
			if s := b.Snapshot(); s.ConnectFailures != uint64(tc.fails) {
				t.Fatalf("%d connect failures counted, want %d", s.ConnectFailures, tc.fails)
			}
		})
	}
}

// Once the failures fall out of the window, it takes MaxFails new ones again.
func TestPassiveWindowSlides(t *testing.T) {
	now := fakeClock(t)
	p := Passive{MaxFails: 3, FailDuration: 10 * time.Second}
	b := New(1, "a", "x:1", 1)
	b.DialFailed(p)
	b.DialFailed(p)
	now.Add(int64(11 * time.Second))
	for i := range 2 {
		if b.DialFailed(p) {
			t.Fatalf("down at failure %d inside the window", i+1)
		}
	}
	if !b.DialFailed(p) {
		t.Fatal("not down at the third failure inside the window")
	}
}

// A backend the active checks bring back starts with a clean record: one
// new failure right after does not take it down again.
func TestPassiveFailuresBeforeAHealthChangeDoNotCount(t *testing.T) {
	fakeClock(t)
	p := Passive{MaxFails: 3, FailDuration: time.Hour}
	b := New(1, "a", "x:1", 1)
	for range 2 {
		b.DialFailed(p)
	}
	if !b.DialFailed(p) {
		t.Fatal("not down at the third failure")
	}
	b.SetUp(false, "passive")
	b.SetUp(true, "active checks passed")
	for i := range 2 {
		if b.DialFailed(p) {
			t.Fatalf("failure %d after coming back took the backend down", i+1)
		}
	}
	if !b.DialFailed(p) {
		t.Fatal("not down at the third failure after coming back")
	}
}

// Under -race: concurrent failures are all counted and, with every failure
// inside the window, every one from the MaxFails-th on reports down.
func TestPassiveConcurrentFailures(t *testing.T) {
	const goroutines, each = 8, 500
	p := Passive{MaxFails: 3, FailDuration: time.Hour}
	b := New(1, "a", "x:1", 1)
	var downs atomic.Int64
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range each {
				if b.DialFailed(p) {
					downs.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if s := b.Snapshot(); s.ConnectFailures != goroutines*each {
		t.Fatalf("%d failures counted, want %d", s.ConnectFailures, goroutines*each)
	}
	if got, want := downs.Load(), int64(goroutines*each-(p.MaxFails-1)); got != want {
		t.Fatalf("%d failures reported down, want %d", got, want)
	}
}
