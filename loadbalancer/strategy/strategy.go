// Package strategy holds the five balancing strategies. Each is a small type
// whose Pick chooses among the eligible (up, not draining) backends of an
// immutable pool snapshot: lock-free, no allocation per pick, nil when no
// backend is eligible. The strategies are registered by name in one list
// (registry); New builds one by name and Names lists them.
package strategy

import (
	"errors"
	"fmt"
	"iter"
	"math"
	"strings"
	"sync/atomic"

	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
)

// Strategy picks a backend for a new connection.
type Strategy interface {
	// Pick returns one of pool's eligible (up, not draining) backends, or
	// nil when there is none. It is called concurrently, must not lock or
	// allocate, and must not modify pool.
	Pick(pool []*backend.Backend) *backend.Backend
}

var (
	_ Strategy = (*RoundRobin)(nil)
	_ Strategy = (*WeightedRoundRobin)(nil)
	_ Strategy = (*LeastConnections)(nil)
	_ Strategy = (*FastestResponseTime)(nil)
	_ Strategy = (*Adaptive)(nil)
)

// Options are the settings of the strategies that take any; each strategy
// reads its own field.
type Options struct {
	Adaptive AdaptiveWeights // for adaptive
}

// registration is one strategy: its name and how it is built for a pool.
// A strategy with settings also owns their type, defaults and validation
// (AdaptiveWeights) and reads them from its field of Options.
type registration struct {
	Name string
	New  func(pool []*backend.Backend, o Options) Strategy
}

// registry is the one list of strategies, in documentation order; the first
// is the default.
var registry = []registration{
	{Name: "round_robin", New: func([]*backend.Backend, Options) Strategy { return &RoundRobin{} }},
	{Name: "least_connections", New: func([]*backend.Backend, Options) Strategy { return &LeastConnections{} }},
	{Name: "weighted_round_robin", New: func(p []*backend.Backend, _ Options) Strategy { return NewWeightedRoundRobin(p) }},
	{Name: "fastest_response_time", New: func([]*backend.Backend, Options) Strategy { return &FastestResponseTime{} }},
	{Name: "adaptive", New: func(_ []*backend.Backend, o Options) Strategy { return &Adaptive{Weights: o.Adaptive} }},
}

// Names returns every strategy name, in documentation order.
func Names() []string {
	names := make([]string, len(registry))
	for i, r := range registry {
		names[i] = r.Name
	}
	return names
}

// Default is the name of the strategy used when none is configured.
func Default() string { return registry[0].Name }

// New returns the strategy called name (one of Names), prepared for pool.
// Strategies that precompute (weighted_round_robin) must be rebuilt when the
// pool or a weight changes; the others may be reused.
func New(name string, pool []*backend.Backend, o Options) (Strategy, error) {
	for _, r := range registry {
		if r.Name == name {
			return r.New(pool, o), nil
		}
	}
	return nil, fmt.Errorf("unknown strategy %q (valid: %s)", name, strings.Join(Names(), ", "))
}

// SettingError is one bad setting of a strategy. Key is relative to the
// strategy's own section ("error_weight"), or "" for the section as a
// whole, so the caller can name it as its file does ("adaptive.error_weight").
type SettingError struct {
	Key string
	Msg string
}

// Error reads "KEY: MSG", or MSG alone for the section as a whole.
func (e *SettingError) Error() string {
	if e.Key == "" {
		return e.Msg
	}
	return e.Key + ": " + e.Msg
}

// cursor is a shared position that advances past the entries a pick skipped,
// so a rotation is exact over the eligible entries, not just the present ones.
type cursor struct{ next atomic.Uint64 }

// pick returns the first index at or after the cursor, modulo n, for which
// ok holds, and moves the cursor past it; -1 when none does.
func (c *cursor) pick(n int, ok func(i int) bool) int {
	if n == 0 {
		return -1
	}
	for {
		cur := c.next.Load()
		start := int(cur % uint64(n))
		found := -1
		var step int
		for step = 0; step < n; step++ {
			i := start + step
			if i >= n {
				i -= n
			}
			if ok(i) {
				found = i
				break
			}
		}
		if found < 0 {
			return -1
		}
		if c.next.CompareAndSwap(cur, cur+uint64(step)+1) {
			return found
		}
	}
}

// scanWindow bounds the backends that the comparing strategies
// (least_connections, fastest_response_time, adaptive) look at per pick. Up to
// this many backends the comparison is exact; beyond it each pick compares a
// window of this many backends from a rotating start (more when the window
// holds no eligible one), so every backend is compared every len/scanWindow
// picks and a pick stays well under a microsecond at 1000 backends.
const scanWindow = 64

// rotation hands out a different starting offset to each pick so that ties in
// a scan are broken in turn, never always in favour of the first backend.
type rotation struct{ n atomic.Uint64 }

func (r *rotation) start(n int) int { return int(r.n.Add(1) % uint64(n)) }

// window yields the eligible backends among scanWindow positions of pool from
// start (wrapping), going further only until it has yielded one.
func window(pool []*backend.Backend, start int) iter.Seq[*backend.Backend] {
	return func(yield func(*backend.Backend) bool) {
		n, found := len(pool), false
		for step := 0; step < n && (step < scanWindow || !found); step++ {
			i := start + step
			if i >= n {
				i -= n
			}
			if b := pool[i]; b.Eligible() {
				found = true
				if !yield(b) {
					return
				}
			}
		}
	}
}

// RoundRobin rotates exactly over the eligible backends.
type RoundRobin struct{ c cursor }

// Pick implements Strategy.
func (r *RoundRobin) Pick(pool []*backend.Backend) *backend.Backend {
	i := r.c.pick(len(pool), func(i int) bool { return pool[i].Eligible() })
	if i < 0 {
		return nil
	}
	return pool[i]
}

// WeightedRoundRobin is nginx's smooth weighted round robin: over one cycle of
// sum(weights) picks each backend is chosen exactly weight times, interleaved
// (weights 5,1,1 give a a b a c a a). The cycle is computed once per pool, so
// a pick is one step along it.
type WeightedRoundRobin struct {
	schedule []int32 // indices into the pool, one cycle
	c        cursor
}

// NewWeightedRoundRobin computes the smooth cycle for pool's current weights.
func NewWeightedRoundRobin(pool []*backend.Backend) *WeightedRoundRobin {
	weights := make([]int, len(pool))
	g := 0
	for i, b := range pool {
		weights[i] = b.Weight()
		g = gcd(g, weights[i])
	}
	total := 0
	for i := range weights {
		weights[i] /= max(g, 1)
		total += weights[i]
	}
	schedule := make([]int32, 0, total)
	current := make([]int, len(pool))
	for range total {
		best := 0
		for i, w := range weights {
			current[i] += w
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		schedule = append(schedule, int32(best))
	}
	return &WeightedRoundRobin{schedule: schedule}
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Pick implements Strategy. pool must be the pool the schedule was built for.
func (w *WeightedRoundRobin) Pick(pool []*backend.Backend) *backend.Backend {
	s := w.schedule
	i := w.c.pick(len(s), func(i int) bool {
		j := int(s[i])
		return j < len(pool) && pool[j].Eligible()
	})
	if i < 0 {
		return nil
	}
	return pool[s[i]]
}

// LeastConnections picks the fewest active connections per unit of weight;
// ties go in turn, so idle backends all get traffic.
type LeastConnections struct{ r rotation }

// Pick implements Strategy.
func (l *LeastConnections) Pick(pool []*backend.Backend) *backend.Backend {
	n := len(pool)
	if n == 0 {
		return nil
	}
	var best *backend.Backend
	var bestActive, bestWeight int64
	for b := range window(pool, l.r.start(n)) {
		a, w := b.Active(), int64(b.Weight())
		// a/w < bestActive/bestWeight, without division.
		if best == nil || a*bestWeight < bestActive*w {
			best, bestActive, bestWeight = b, a, w
		}
	}
	return best
}

// FastestResponseTime picks the lowest moving average of response time.
// Backends with no sample yet go first, so every backend gets measured; ties go
// in turn.
type FastestResponseTime struct{ r rotation }

// Pick implements Strategy.
func (f *FastestResponseTime) Pick(pool []*backend.Backend) *backend.Backend {
	n := len(pool)
	if n == 0 {
		return nil
	}
	var best *backend.Backend
	var bestLatency float64
	for b := range window(pool, f.r.start(n)) {
		lat, measured := b.Latency()
		if !measured {
			return b
		}
		if best == nil || lat < bestLatency {
			best, bestLatency = b, lat
		}
	}
	return best
}

// Adaptive scores each backend on three normalized factors and picks the
// lowest score:
//
//	score = ConnectionWeight·load/maxLoad + LatencyWeight·lat/maxLat + ErrorWeight·errorRate
//
// where load is (active connections + 1) per unit of weight, lat is the response
// time average plus one standard deviation (an unsteady backend scores worse
// than a steady one with the same mean), and errorRate is the moving average
// of failed dials (0..1). Unmeasured backends count as zero latency so they get
// measured. Ties go in turn.
type Adaptive struct {
	Weights AdaptiveWeights // the factors of the score; set before the first Pick
	r       rotation
}

// AdaptiveWeights are the adaptive strategy's factor weights (the file's
// adaptive section). They are relative (they need not sum to 1),
// non-negative, and not all zero.
type AdaptiveWeights struct {
	ConnectionWeight float64 `mapstructure:"connection_weight"` // default 0.4
	LatencyWeight    float64 `mapstructure:"latency_weight"`    // default 0.4
	ErrorWeight      float64 `mapstructure:"error_weight"`      // default 0.2
}

// DefaultAdaptiveWeights returns the weights the seed uses.
func DefaultAdaptiveWeights() AdaptiveWeights {
	return AdaptiveWeights{ConnectionWeight: 0.4, LatencyWeight: 0.4, ErrorWeight: 0.2}
}

// Validate reports every bad weight, each a *SettingError, joined.
func (w AdaptiveWeights) Validate() error {
	var errs []error
	for _, f := range []struct {
		key string
		v   float64
	}{
		{"connection_weight", w.ConnectionWeight},
		{"latency_weight", w.LatencyWeight},
		{"error_weight", w.ErrorWeight},
	} {
		if f.v < 0 || math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			errs = append(errs, &SettingError{f.key, fmt.Sprintf("must be a non-negative number, got %v", f.v)})
		}
	}
	if w.ConnectionWeight == 0 && w.LatencyWeight == 0 && w.ErrorWeight == 0 {
		errs = append(errs, &SettingError{"", "connection_weight, latency_weight and error_weight must not all be 0"})
	}
	return errors.Join(errs...)
}

// Pick implements Strategy.
func (a *Adaptive) Pick(pool []*backend.Backend) *backend.Backend {
	n := len(pool)
	if n == 0 {
		return nil
	}
	// Both passes (maxima, then scores) cover the same window.
	start := a.r.start(n)
	var maxLoad, maxLat float64
	for b := range window(pool, start) {
		maxLoad = max(maxLoad, load(b))
		maxLat = max(maxLat, latencyScore(b))
	}
	var best *backend.Backend
	var bestScore float64
	for b := range window(pool, start) {
		score := a.Weights.ErrorWeight * b.ErrorRate()
		if maxLoad > 0 {
			score += a.Weights.ConnectionWeight * load(b) / maxLoad
		}
		if maxLat > 0 {
			score += a.Weights.LatencyWeight * latencyScore(b) / maxLat
		}
		if best == nil || score < bestScore {
			best, bestScore = b, score
		}
	}
	return best
}

// load is the backend's connections per unit of weight once this pick lands
// on it: counting the new connection keeps one lingering connection from
// looking like an infinitely worse load than none.
func load(b *backend.Backend) float64 { return float64(b.Active()+1) / float64(b.Weight()) }

func latencyScore(b *backend.Backend) float64 {
	lat, ok := b.Latency()
	if !ok {
		return 0
	}
	return lat + b.LatencyStdDev()
}
