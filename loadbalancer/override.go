package loadbalancer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
	"github.com/lemonade-lb/lemonade/loadbalancer/config"
	"github.com/lemonade-lb/lemonade/loadbalancer/proxy"
	"github.com/lemonade-lb/lemonade/loadbalancer/strategy"
)

// Overrides are an operator's changes to one backend, made at run time (the
// admin API), that a reload of the config does not undo: a maintenance drain
// must not end because someone else edited the file. They belong to the
// backend, not to its id: a reload that removes the backend, or changes its
// address (a new backend), drops them. The kinds, as the status shows them:
const (
	OverrideDrain   = "drain"   // no new connections; open ones finish
	OverrideDisable = "disable" // no new connections; open ones are closed after runtime.drain_timeout_millis
	OverrideWeight  = "weight"  // the weight in force is the operator's
)

// Errors of the override methods, for errors.Is.
var (
	ErrUnknownBackend = errors.New("unknown backend")
	ErrConflict       = errors.New("conflicts with the backend's state")
	ErrInvalidWeight  = errors.New("invalid weight")
)

// override is one backend's overrides: a state and a weight, independent, so
// draining a reweighted backend keeps its weight.
type override struct {
	state  string        // "", OverrideDrain or OverrideDisable
	weight int           // 0: the config's
	cancel chan struct{} // disable: closed to call off the pending close
}

// label is what the status shows: the state, else "weight".
func (o override) label() string {
	if o.state == "" && o.weight != 0 {
		return OverrideWeight
	}
	return o.state
}

// DrainBackend stops new connections to the backend with this id; open ones
// finish, however long they take. It returns the backend's state.
func (b *Balancer) DrainBackend(id int) (backend.Snapshot, error) {
	return b.changeBackend(id, func(_ *running, be *backend.Backend, ov *override) error {
		switch ov.state {
		case OverrideDrain:
			return nil
		case OverrideDisable:
			return fmt.Errorf("%w: backend %d is disabled; enable it first", ErrConflict, id)
		}
		ov.state = OverrideDrain
		be.Drain()
		return nil
	})
}

// DisableBackend stops new connections to the backend with this id and
// closes the open ones after runtime.drain_timeout_millis (at once when they
// end sooner). A drained backend can be disabled, to cut a drain short.
func (b *Balancer) DisableBackend(id int) (backend.Snapshot, error) {
	return b.changeBackend(id, func(r *running, be *backend.Backend, ov *override) error {
		if ov.state == OverrideDisable {
			return nil
		}
		ov.state = OverrideDisable
		ov.cancel = make(chan struct{})
		be.Drain()
		timeout, cancel := b.Config().Runtime.DrainTimeout, ov.cancel
		r.drains.Go(func() { b.closeAfter(be, "disabled", timeout, cancel, r.stopDrains) })
		return nil
	})
}

// EnableBackend clears every override of the backend with this id: it takes
// new connections again, with the config's weight.
func (b *Balancer) EnableBackend(id int) (backend.Snapshot, error) {
	return b.changeBackend(id, func(_ *running, be *backend.Backend, ov *override) error {
		if ov.cancel != nil {
			close(ov.cancel)
		}
		be.Undrain()
		reweigh := ov.weight != 0
		*ov = override{}
		if reweigh {
			be.SetWeight(b.configWeight(id))
			b.publish(b.Config(), b.poolNow())
		}
		return nil
	})
}

// SetBackendWeight makes weight (config.MinWeight..config.MaxWeight) the
// weight of the backend with this id until the override is cleared.
func (b *Balancer) SetBackendWeight(id, weight int) (backend.Snapshot, error) {
	if weight < config.MinWeight || weight > config.MaxWeight {
		return backend.Snapshot{}, fmt.Errorf("%w %d: must be %d..%d, as a backend's weight in the config", ErrInvalidWeight, weight, config.MinWeight, config.MaxWeight)
	}
	return b.changeBackend(id, func(_ *running, be *backend.Backend, ov *override) error {
		ov.weight = weight
		if be.Weight() != weight {
			be.SetWeight(weight)
			// weighted_round_robin prepares its schedule from the weights.
			b.publish(b.Config(), b.poolNow())
		}
		return nil
	})
}

// changeBackend runs change on the running backend with this id and its
// overrides, in the run loop, and returns the backend's state after it.
func (b *Balancer) changeBackend(id int, change func(r *running, be *backend.Backend, ov *override) error) (backend.Snapshot, error) {
	var snap backend.Snapshot
	var err error
	done := b.do(func(_ context.Context, r *running) {
		var be *backend.Backend
		ids := []string{}
		for _, p := range b.poolNow() {
			ids = append(ids, strconv.Itoa(p.ID))
			if p.ID == id {
				be = p
			}
		}
		if be == nil {
			err = fmt.Errorf("%w: no backend has id %d (ids: %s)", ErrUnknownBackend, id, strings.Join(ids, ", "))
			return
		}
		b.mu.Lock()
		ov := b.overrides[id]
		b.mu.Unlock()
		before := ov
		if err = change(r, be, &ov); err != nil {
			return
		}
		b.mu.Lock()
		if ov.label() == "" {
			delete(b.overrides, id)
		} else {
			b.overrides[id] = ov
		}
		snap = b.backendSnapshot(be)
		b.mu.Unlock()
		if before.label() != ov.label() || before.weight != ov.weight {
			b.log.Info("backend override changed", "backend", be.Name(), "id", id, "address", be.Address,
				"from", cmp.Or(before.label(), "none"), "to", cmp.Or(ov.label(), "none"), "weight", be.Weight())
		}
	})
	if done != nil {
		return backend.Snapshot{}, done
	}
	return snap, err
}

// backendSnapshot is be's state with its overrides. b.mu must be held.
func (b *Balancer) backendSnapshot(be *backend.Backend) backend.Snapshot {
	s := be.Snapshot()
	if ov, ok := b.overrides[be.ID]; ok {
		s.Override, s.OverrideWeight = ov.label(), ov.weight
	}
	return s
}

// dropOverride forgets the overrides of the backend with this id, calling
// off a pending close. b.mu must be held.
func (b *Balancer) dropOverride(id int) {
	if ov, ok := b.overrides[id]; ok {
		if ov.cancel != nil {
			close(ov.cancel)
		}
		delete(b.overrides, id)
	}
}

// closeAfter closes be's open connections once timeout has passed, unless
// they end first, the drain is called off (cancel: an enable; nil for none)
// or the balancer shuts down (stop: the shutdown closes every connection
// itself). why names the drain in the log: "disabled", "removed".
func (b *Balancer) closeAfter(be *backend.Backend, why string, timeout time.Duration, cancel, stop <-chan struct{}) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	select {
	case <-b.srv.Drained(be):
	case <-deadline.C:
		n := b.srv.CloseBackend(be)
		b.log.Info(why+" backend: drain timeout reached, closed connections", "backend", be.Name(), "address", be.Address, "closed", n)
	case <-cancel:
	case <-stop:
	}
}

// configWeight is the running config's weight for the backend with this id.
func (b *Balancer) configWeight(id int) int {
	cfg := b.Config()
	if i := slices.IndexFunc(cfg.Backends, func(bc config.Backend) bool { return bc.ID == id }); i >= 0 {
		return cfg.Backends[i].Weight
	}
	return config.MinWeight
}

// poolNow is the running backends.
func (b *Balancer) poolNow() []*backend.Backend {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pool
}

// publish routes new connections by pool with cfg's strategy, built afresh:
// the strategies that precompute (weighted_round_robin) read the weights now.
func (b *Balancer) publish(cfg *config.Config, pool []*backend.Backend) {
	strat, _ := strategy.New(cfg.Strategy, pool, strategy.Options{Adaptive: cfg.Adaptive}) // the name was checked when cfg was applied
	b.srv.SetTable(&proxy.Table{Backends: pool, Strategy: strat})
}
