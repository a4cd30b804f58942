// Package backend holds one upstream server's identity and live state. The
// state is all atomics so the proxy, the health checker, the strategies and
// the admin readers share a *Backend without locks on the hot path.
package backend

import (
	"log/slog"
	"math"
	"sync/atomic"
	"time"
)

// ewmaAlpha weighs a new latency sample against the running average: 0.2
// follows a change within ~10 samples without jumping on one outlier.
const ewmaAlpha = 0.2

// Backend is one upstream server. ID and Address never change: a reload that
// changes the address drains this Backend and creates a new one. Name and
// weight change in place. A Backend must not be copied; pass pointers.
type Backend struct {
	ID      int    // the config's id: the backend's identity across reloads
	Address string // host:port, as the config gives it

	addrs addrBook // Address resolved, for the proxy and the health checks (resolve.go)

	name   atomic.Pointer[string]
	weight atomic.Int32

	up       atomic.Bool
	draining atomic.Bool

	active          atomic.Int64  // connections open now (counted from pick to close)
	total           atomic.Uint64 // connections proxied successfully
	connectFailures atomic.Uint64 // dials that failed (refused, timed out)
	bytesIn         atomic.Uint64 // client → backend
	bytesOut        atomic.Uint64 // backend → client

	latency   atomic.Uint64 // float64 bits: EWMA of response time in ns
	latVar    atomic.Uint64 // float64 bits: EWMA of the variance, ns²
	samples   atomic.Uint64 // latency samples taken
	ttfb      Histogram     // the measured response times (not the connect-time seed)
	errorRate atomic.Uint64 // float64 bits: EWMA of dial outcomes, 1 = failed

	transitions atomic.Uint64
	lastCheck   atomic.Int64 // unix ns of the last active check
	lastCheckOK atomic.Bool
	lastReason  atomic.Pointer[string]

	passive passive // failed dials, for the passive health policy (passive.go)
}

// New returns a Backend that is up, with weight clamped to at least 1.
func New(id int, name, address string, weight int) *Backend {
	b := &Backend{ID: id, Address: address}
	b.addrs.init(address)
	b.SetName(name)
	b.SetWeight(weight)
	b.up.Store(true)
	return b
}

// Name returns the display name.
func (b *Backend) Name() string { return *b.name.Load() }

// SetName changes the display name in place.
func (b *Backend) SetName(name string) { b.name.Store(&name) }

// Weight returns the weight, at least 1.
func (b *Backend) Weight() int { return int(b.weight.Load()) }

// SetWeight changes the weight in place; values below 1 become 1.
func (b *Backend) SetWeight(w int) { b.weight.Store(int32(max(w, 1))) }

// Eligible reports whether the backend may take a new connection: up and not draining.
func (b *Backend) Eligible() bool { return b.up.Load() && !b.draining.Load() }

// Up reports the health state.
func (b *Backend) Up() bool { return b.up.Load() }

// SetUp records a health state and reports whether it changed.
func (b *Backend) SetUp(up bool, reason string) (changed bool) {
	if b.up.Swap(up) == up {
		return false
	}
	b.transitions.Add(1)
	b.lastReason.Store(&reason)
	return true
}

// Draining reports whether the backend takes no new connections.
func (b *Backend) Draining() bool { return b.draining.Load() }

// Drain stops new connections to the backend; existing ones continue.
func (b *Backend) Drain() { b.draining.Store(true) }

// Undrain lets the backend take new connections again (an operator's drain
// undone; a backend a reload removed is never undrained).
func (b *Backend) Undrain() { b.draining.Store(false) }

// Active returns the number of open connections.
func (b *Backend) Active() int64 { return b.active.Load() }

// Acquire counts a connection from the moment it is assigned, so concurrent
// picks by least_connections already see it.
func (b *Backend) Acquire() { b.active.Add(1) }

// Release undoes Acquire.
func (b *Backend) Release() { b.active.Add(-1) }

// Connected records a successful dial and its connect time, which seeds the
// latency average until a response time is measured.
func (b *Backend) Connected(connect time.Duration) {
	b.total.Add(1)
	b.observeError(0)
	if b.samples.Load() == 0 {
		b.foldLatency(connect)
	}
}

// AddBytes adds the bytes a finished connection moved each way.
func (b *Backend) AddBytes(in, out int64) {
	if in > 0 {
		b.bytesIn.Add(uint64(in))
	}
	if out > 0 {
		b.bytesOut.Add(uint64(out))
	}
}

// ObserveLatency counts one response-time sample (time to first byte) in
// the histogram and folds it into the running averages.
func (b *Backend) ObserveLatency(d time.Duration) {
	b.ttfb.Observe(d)
	b.foldLatency(d)
}

func (b *Backend) foldLatency(d time.Duration) {
	x := float64(d)
	if b.samples.Add(1) == 1 {
		b.latency.Store(math.Float64bits(x))
		b.latVar.Store(0)
		return
	}
	var diff float64
	updateFloat(&b.latency, func(mean float64) float64 {
		diff = x - mean
		return mean + ewmaAlpha*diff
	})
	updateFloat(&b.latVar, func(v float64) float64 {
		return (1 - ewmaAlpha) * (v + ewmaAlpha*diff*diff)
	})
}

func (b *Backend) observeError(x float64) {
	updateFloat(&b.errorRate, func(r float64) float64 { return r + ewmaAlpha*(x-r) })
}

func updateFloat(a *atomic.Uint64, f func(float64) float64) {
	for {
		old := a.Load()
		if a.CompareAndSwap(old, math.Float64bits(f(math.Float64frombits(old)))) {
			return
		}
	}
}

// Latency returns the EWMA of response time in ns and whether any sample exists.
func (b *Backend) Latency() (ns float64, ok bool) {
	return math.Float64frombits(b.latency.Load()), b.samples.Load() > 0
}

// LatencyStdDev returns the EWMA standard deviation of response time in ns.
func (b *Backend) LatencyStdDev() float64 { return math.Sqrt(math.Float64frombits(b.latVar.Load())) }

// ErrorRate returns the EWMA of dial failures, from 0 (none) to 1 (all).
func (b *Backend) ErrorRate() float64 { return math.Float64frombits(b.errorRate.Load()) }

// Checked records the time and outcome of an active health check.
func (b *Backend) Checked(at time.Time, ok bool) {
	b.lastCheck.Store(at.UnixNano())
	b.lastCheckOK.Store(ok)
}

// Snapshot is a point-in-time copy of a backend's state, for readers.
type Snapshot struct {
	ID              int               `json:"id"`
	Name            string            `json:"name"`
	Address         string            `json:"address"`
	Weight          int               `json:"weight"`                           // in force: the config's, or an override's
	Up              bool              `json:"up"`                               // as the active and passive checks last decided
	Draining        bool              `json:"draining"`                         // takes no new connection
	Active          int64             `json:"active_connections"`               // open now
	Total           uint64            `json:"total_connections"`                // routed to it since it was added
	ConnectFailures uint64            `json:"connect_failures"`                 // dials that failed
	BytesIn         uint64            `json:"bytes_in"`                         // client → backend, of finished connections
	BytesOut        uint64            `json:"bytes_out"`                        // backend → client, of finished connections
	Latency         time.Duration     `json:"latency_ewma_ns"`                  // moving average of the response time; 0 before the first sample
	LatencyStdDev   time.Duration     `json:"latency_stddev_ns"`                // moving standard deviation of the response time
	LatencySamples  uint64            `json:"latency_samples"`                  // response times measured
	ResponseTime    HistogramSnapshot `json:"response_time_histogram"`          // measured times to first byte only (the EWMA may start from a connect time)
	ErrorRate       float64           `json:"error_rate"`                       // moving average of failed dials, 0 (none) to 1 (all)
	Transitions     uint64            `json:"health_transitions"`               // up↔down changes
	LastCheck       time.Time         `json:"last_check,omitzero"`              // of the latest active check; zero before the first
	LastCheckOK     bool              `json:"last_check_ok"`                    // whether it passed
	LastReason      string            `json:"last_transition_reason,omitempty"` // why the latest up↔down change happened
	// Override and OverrideWeight are an operator's change made through the
	// admin API ("drain", "disable" or "weight"; the weight it set, or 0),
	// filled in by the balancer, which owns overrides.
	Override       string `json:"override,omitempty"`
	OverrideWeight int    `json:"override_weight,omitempty"`
}

// Snapshot reads the current state.
func (b *Backend) Snapshot() Snapshot {
	lat, _ := b.Latency()
	s := Snapshot{
		ID:              b.ID,
		Name:            b.Name(),
		Address:         b.Address,
		Weight:          b.Weight(),
		Up:              b.up.Load(),
		Draining:        b.draining.Load(),
		Active:          b.active.Load(),
		Total:           b.total.Load(),
		ConnectFailures: b.connectFailures.Load(),
		BytesIn:         b.bytesIn.Load(),
		BytesOut:        b.bytesOut.Load(),
		Latency:         time.Duration(lat),
		LatencyStdDev:   time.Duration(b.LatencyStdDev()),
		LatencySamples:  b.samples.Load(),
		ResponseTime:    b.ttfb.Snapshot(),
		ErrorRate:       b.ErrorRate(),
		Transitions:     b.transitions.Load(),
		LastCheckOK:     b.lastCheckOK.Load(),
	}
	if ns := b.lastCheck.Load(); ns != 0 {
		s.LastCheck = time.Unix(0, ns)
	}
	if r := b.lastReason.Load(); r != nil {
		s.LastReason = *r
	}
	return s
}

// Transition records a health state change and logs it once, at info, with
// the reason. It reports whether the state changed.
func (b *Backend) Transition(log *slog.Logger, up bool, reason string) bool {
	if !b.SetUp(up, reason) {
		return false
	}
	from, to := "up", "down"
	if up {
		from, to = to, from
	}
	log.Info("backend health changed", "backend", b.Name(), "id", b.ID, "address", b.Address, "from", from, "to", to, "reason", reason)
	return true
}
