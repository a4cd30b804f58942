package backend

import (
	"sync/atomic"
	"time"
)

// Passive is the passive health policy: a backend is marked down when
// MaxFails dials to it failed within FailDuration (as Caddy's max_fails and
// fail_duration). A failed dial always tries another backend at once; the
// policy only decides when the backend stops being picked until the active
// checks bring it back. The zero value never marks a backend down.
type Passive struct {
	MaxFails     int           // failures that mark the backend down; 0 = never; at most MaxPassiveFails
	FailDuration time.Duration // the window they must fall within
}

// MaxPassiveFails bounds Passive.MaxFails: the failure times a backend keeps.
const MaxPassiveFails = 32

// epoch makes failure times monotonic: a wall-clock step must not make old
// failures recent.
var epoch = time.Now()

// sinceEpoch is the clock of the failure times; tests replace it.
var sinceEpoch = func() int64 { return int64(time.Since(epoch)) }

// passive is a backend's record of failed dials.
type passive struct {
	fails atomic.Uint64                 // failed dials ever, indexes times
	times [MaxPassiveFails]atomic.Int64 // sinceEpoch of the latest failed dials (a ring)
	// floor is the value of fails when the health state last changed, seen
	// by era (the backend's transitions count then): the failures before it
	// do not count, so a backend the active checks just brought back is not
	// taken down again by one new failure and the ones that took it down.
	floor atomic.Uint64
	era   atomic.Uint64
}

// DialFailed records a failed dial and reports whether, under p, the
// backend is now to be marked down: at least p.MaxFails failures since its
// health state last changed, the p.MaxFails-th latest no more than
// p.FailDuration ago. Safe for concurrent use; a race with another failure
// can only delay the verdict by one failure.
func (b *Backend) DialFailed(p Passive) (down bool) {
	b.connectFailures.Add(1)
	b.observeError(1)
	f := &b.passive
	now := sinceEpoch()
	n := f.fails.Add(1) // failures recorded, this one included
	f.times[(n-1)%MaxPassiveFails].Store(now)
	if t := b.transitions.Load(); f.era.Load() != t {
		f.era.Store(t)
		f.floor.Store(n - 1)
	}
	m := uint64(min(p.MaxFails, MaxPassiveFails))
	if p.MaxFails <= 0 || n-min(f.floor.Load(), n) < m {
		return false
	}
	oldest := f.times[(n-m)%MaxPassiveFails].Load()
	return now-oldest <= int64(p.FailDuration)
}
