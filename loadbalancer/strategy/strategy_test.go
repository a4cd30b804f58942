package strategy

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
)

var defaultOptions = Options{Adaptive: DefaultAdaptiveWeights()}

func pool(weights ...int) []*backend.Backend {
	p := make([]*backend.Backend, len(weights))
	for i, w := range weights {
		p[i] = backend.New(i, string(rune('a'+i)), fmt.Sprintf("127.0.0.1:%d", 10000+i), w)
	}
	return p
}

func sequence(s Strategy, p []*backend.Backend, n int) string {
	var sb strings.Builder
	for range n {
		b := s.Pick(p)
		if b == nil {
			sb.WriteByte('-')
			continue
		}
		sb.WriteString(b.Name())
	}
	return sb.String()
}

func TestRoundRobinRotatesExactlyOverEligible(t *testing.T) {
	p := pool(1, 1, 1, 1)
	rr := &RoundRobin{}
	if got := sequence(rr, p, 8); got != "abcdabcd" {
		t.Fatalf("all up: %s", got)
	}
	p[1].SetUp(false, "test")
	p[2].Drain()
	// An exact rotation over a and d, not "d gets the share of b and c".
	if got := sequence(rr, p, 6); got != "adadad" {
		t.Fatalf("b down, c draining: %s", got)
	}
}

func TestWeightedRoundRobinIsSmooth(t *testing.T) {
	p := pool(5, 1, 1)
	w := NewWeightedRoundRobin(p)
	if got := sequence(w, p, 14); got != "aabacaaaabacaa" {
		t.Fatalf("5,1,1: %s", got)
	}
	p = pool(3, 2, 1)
	if got := sequence(NewWeightedRoundRobin(p), p, 6); strings.Count(got, "a") != 3 || strings.Count(got, "b") != 2 || strings.Count(got, "c") != 1 {
		t.Fatalf("3,2,1: %s", got)
	}
}

func TestWeightedRoundRobinSkipsIneligibleKeepingProportions(t *testing.T) {
	p := pool(4, 2, 1)
	w := NewWeightedRoundRobin(p)
	p[0].SetUp(false, "test")
	got := sequence(w, p, 300)
	if strings.Count(got, "b") != 200 || strings.Count(got, "c") != 100 {
		t.Fatalf("with a down, want b:c = 2:1 exactly, got b=%d c=%d", strings.Count(got, "b"), strings.Count(got, "c"))
	}
}

func TestLeastConnectionsPrefersFewestPerWeightAndRotatesTies(t *testing.T) {
	p := pool(1, 1, 2)
	lc := &LeastConnections{}
	// Idle: every backend gets picked in turn.
	if got := sequence(lc, p, 3); strings.Count(got, "a") != 1 || strings.Count(got, "b") != 1 || strings.Count(got, "c") != 1 {
		t.Fatalf("idle picks %s", got)
	}
	for range 4 {
		p[0].Acquire()
	}
	p[1].Acquire()
	for range 3 {
		p[2].Acquire() // 3/2 = 1.5 per weight > b's 1
	}
	if b := lc.Pick(p); b != p[1] {
		t.Fatalf("picked %s, want b", b.Name())
	}
}

func TestFastestResponseTime(t *testing.T) {
	p := pool(1, 1, 1)
	f := &FastestResponseTime{}
	p[0].ObserveLatency(5 * time.Millisecond)
	p[1].ObserveLatency(time.Millisecond)
	if b := f.Pick(p); b != p[2] {
		t.Fatalf("unmeasured backend c should go first, got %s", b.Name())
	}
	p[2].ObserveLatency(10 * time.Millisecond)
	for range 10 {
		if b := f.Pick(p); b != p[1] {
			t.Fatalf("picked %s, want the fastest b", b.Name())
		}
	}
	p[1].SetUp(false, "test")
	if b := f.Pick(p); b != p[0] {
		t.Fatalf("picked %s, want a once b is down", b.Name())
	}
}

func TestAdaptiveWeighsLoadLatencyAndErrors(t *testing.T) {
	p := pool(1, 1)
	a := &Adaptive{Weights: DefaultAdaptiveWeights()}
	p[0].ObserveLatency(100 * time.Millisecond)
	p[1].ObserveLatency(5 * time.Millisecond)
	if b := a.Pick(p); b != p[1] {
		t.Fatalf("picked %s, want the fast b", b.Name())
	}
	for range 30 {
		p[1].Acquire() // b is 20× faster but now 31× busier
	}
	if b := a.Pick(p); b != p[0] {
		t.Fatalf("picked %s, want a once b is loaded", b.Name())
	}
	q := pool(1, 1)
	for range 10 {
		q[0].DialFailed(backend.Passive{})
	}
	if b := a.Pick(q); b != q[1] {
		t.Fatalf("picked %s, want b over the failing a", b.Name())
	}
}

func allStrategies(t *testing.T, p []*backend.Backend) map[string]Strategy {
	t.Helper()
	m := map[string]Strategy{}
	for _, name := range Names() {
		s, err := New(name, p, defaultOptions)
		if err != nil {
			t.Fatal(err)
		}
		m[name] = s
	}
	return m
}

func TestNewRejectsUnknownNames(t *testing.T) {
	_, err := New("random", nil, defaultOptions)
	if err == nil || !strings.Contains(err.Error(), "random") || !strings.Contains(err.Error(), "round_robin") {
		t.Fatalf("error %v should name the bad value and the valid ones", err)
	}
}

// Randomized properties shared by every strategy: never a down or draining
// backend, nil exactly when nothing is eligible, and every eligible backend
// gets traffic when the load is even.
func TestPropertiesOfEveryStrategy(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		n := 1 + rng.IntN(12)
		weights := make([]int, n)
		for i := range weights {
			weights[i] = 1 + rng.IntN(5)
		}
		p := pool(weights...)
		eligible := 0
		for _, b := range p {
			switch rng.IntN(4) {
			case 0:
				b.SetUp(false, "test")
			case 1:
				b.Drain()
			default:
				eligible++
			}
		}
		for name, s := range allStrategies(t, p) {
			seen := map[*backend.Backend]int{}
			for range 50 * n {
				b := s.Pick(p)
				if eligible == 0 {
					if b != nil {
						t.Fatalf("round %d %s: picked %s with nothing eligible", round, name, b.Name())
					}
					continue
				}
				if b == nil || !b.Eligible() {
					t.Fatalf("round %d %s: picked %v, not an eligible backend", round, name, b)
				}
				seen[b]++
			}
			if name != "fastest_response_time" && name != "adaptive" && len(seen) != eligible {
				t.Fatalf("round %d %s: %d of %d eligible backends got traffic", round, name, len(seen), eligible)
			}
		}
	}
}

func TestPicksDoNotAllocate(t *testing.T) {
	p := pool(1, 2, 3, 4)
	for name, s := range allStrategies(t, p) {
		if n := testing.AllocsPerRun(100, func() { s.Pick(p) }); n != 0 {
			t.Errorf("%s: %v allocs per pick", name, n)
		}
	}
}

func BenchmarkPick(b *testing.B) {
	for _, n := range []int{4, 100, 1000} {
		weights := make([]int, n)
		for i := range weights {
			weights[i] = 1 + i%5
		}
		p := pool(weights...)
		for i, be := range p {
			be.ObserveLatency(time.Duration(1+i%7) * time.Millisecond)
			for range i % 3 {
				be.Acquire()
			}
		}
		for _, name := range Names() {
			s, _ := New(name, p, defaultOptions)
			b.Run(fmt.Sprintf("%s/backends=%d", name, n), func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if s.Pick(p) == nil {
							b.Fatal("nil pick")
						}
					}
				})
			})
		}
	}
}

// Past scanWindow backends, a pick still never misses the only eligible one.
func TestLargePoolsFindTheOnlyEligibleBackend(t *testing.T) {
	weights := make([]int, 1000)
	for i := range weights {
		weights[i] = 1
	}
	p := pool(weights...)
	for _, b := range p {
		b.SetUp(false, "test")
	}
	p[777].SetUp(true, "test")
	for name, s := range allStrategies(t, p) {
		for range 20 {
			if b := s.Pick(p); b != p[777] {
				t.Fatalf("%s picked %v, want the only eligible backend", name, b)
			}
		}
	}
}

// The names are a public contract (config files, the CLI, the docs): their
// set and order must not change by accident.
func TestNamesInDocumentationOrder(t *testing.T) {
	want := []string{"round_robin", "least_connections", "weighted_round_robin", "fastest_response_time", "adaptive"}
	if got := Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	if Default() != "round_robin" {
		t.Fatalf("Default() = %q", Default())
	}
	for _, name := range Names() {
		s, err := New(name, pool(1), defaultOptions)
		if err != nil || s == nil {
			t.Fatalf("New(%q) = %v, %v", name, s, err)
		}
	}
}

func TestNewPassesTheAdaptiveWeights(t *testing.T) {
	w := AdaptiveWeights{LatencyWeight: 1}
	s, err := New("adaptive", nil, Options{Adaptive: w})
	if err != nil || s.(*Adaptive).Weights != w {
		t.Fatalf("New(adaptive) = %+v, %v; want weights %+v", s, err, w)
	}
}

func TestAdaptiveWeightsValidate(t *testing.T) {
	cases := []struct {
		name string
		w    AdaptiveWeights
		want []string // "key: message" of each problem, in order
	}{
		{"defaults", DefaultAdaptiveWeights(), nil},
		{"one factor", AdaptiveWeights{ErrorWeight: 1}, nil},
		{"negative", AdaptiveWeights{ConnectionWeight: 1, ErrorWeight: -0.5}, []string{"error_weight: must be a non-negative number, got -0.5"}},
		{"nan and inf", AdaptiveWeights{ConnectionWeight: math.NaN(), LatencyWeight: math.Inf(1), ErrorWeight: 1},
			[]string{"connection_weight: must be a non-negative number, got NaN", "latency_weight: must be a non-negative number, got +Inf"}},
		{"all zero", AdaptiveWeights{}, []string{"connection_weight, latency_weight and error_weight must not all be 0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.w.Validate()
			var got []string
			if err != nil {
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					var se *SettingError
					if !errors.As(e, &se) {
						t.Fatalf("%v is not a *SettingError", e)
					}
					got = append(got, se.Error())
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Validate() = %q, want %q", got, tc.want)
			}
		})
	}
}
