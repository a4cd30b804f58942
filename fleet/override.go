package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lemonade-lb/lemonade/loadbalancer"
	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

// Override is an operator's change to one backend on every balancer of the
// fleet (the admin API's ?scope=fleet), the value of
// PREFIX/overrides/POOL/NAME. The zero Override is none: its key is deleted.
type Override struct {
	State  string `json:"state,omitempty"`  // "", loadbalancer.OverrideDrain or OverrideDisable
	Weight int    `json:"weight,omitempty"` // 0: the config's
}

// Overrides is the prefix of every override key of pool, ending in "/".
func (k Keys) Overrides(pool string) string { return k.Prefix + "/overrides/" + pool + "/" }

// Override is the key of the override of the backend name in pool.
func (k Keys) Override(pool, name string) string { return k.Overrides(pool) + name }

// parseOverride reads the value of an override key.
func parseOverride(key string, value []byte) (Override, error) {
	var o Override
	dec := json.NewDecoder(strings.NewReader(string(value)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return o, fmt.Errorf("%s: want JSON like {\"state\": \"drain\", \"weight\": 3}: %w", key, err)
	}
	switch o.State {
	case "", loadbalancer.OverrideDrain, loadbalancer.OverrideDisable:
	default:
		return o, fmt.Errorf("%s: state %q: want %q, %q or none", key, o.State, loadbalancer.OverrideDrain, loadbalancer.OverrideDisable)
	}
	if o.Weight != 0 && (o.Weight < config.MinWeight || o.Weight > config.MaxWeight) {
		return o, fmt.Errorf("%s: weight %d: want %d..%d", key, o.Weight, config.MinWeight, config.MaxWeight)
	}
	return o, nil
}

// SetOverride changes the fleet-wide override of the backend name in pool
// under k with change, atomically (a concurrent change is read again and
// retried). A change that leaves the zero Override deletes the key.
func SetOverride(ctx context.Context, cli *clientv3.Client, k Keys, pool, name string, change func(*Override)) error {
	if err := CheckName("backend", name); err != nil {
		return err
	}
	key := k.Override(pool, name)
	for {
		resp, err := cli.Get(ctx, key)
		if err != nil {
			return err
		}
		var o Override
		var rev int64
		if len(resp.Kvs) == 1 {
			rev = resp.Kvs[0].ModRevision
			if o, err = parseOverride(key, resp.Kvs[0].Value); err != nil {
				o = Override{} // a broken value is replaced
			}
		}
		change(&o)
		op := clientv3.OpDelete(key)
		if o != (Override{}) {
			value, err := json.Marshal(o)
			if err != nil {
				return err
			}
			op = clientv3.OpPut(key, string(value))
		}
		txn, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).Then(op).Commit()
		if err != nil {
			return err
		}
		if txn.Succeeded {
			return nil
		}
	}
}

// Overrider is what fleet overrides act on: a *loadbalancer.Balancer.
type Overrider interface {
	Config() *config.Config
	DrainBackend(id int) (backend.Snapshot, error)
	DisableBackend(id int) (backend.Snapshot, error)
	EnableBackend(id int) (backend.Snapshot, error)
	SetBackendWeight(id, weight int) (backend.Snapshot, error)
}

var _ Overrider = (*loadbalancer.Balancer)(nil)

// BalancerSink is the Sink of one balancer: config changes go to its
// Sources, and the fleet's overrides to the balancer itself, matched to its
// backends by name. NewBalancerSink hooks it to the Sources, so the
// overrides are matched again after every apply, whatever its source: a
// backend that joins or is replaced gets its name's override.
type BalancerSink struct {
	sources *loadbalancer.Sources
	b       Overrider
	log     *slog.Logger

	mu      sync.Mutex
	want    map[string]Override // the fleet's, by backend name
	applied map[string]applied  // what this balancer applied of them, by name
}

// applied is a fleet override as applied to one backend: a replaced
// backend (another id or address under the name) has none yet.
type applied struct {
	id      int
	address string
	o       Override
}

// NewBalancerSink returns the Sink of the balancer b, whose config sources
// are sources.
func NewBalancerSink(sources *loadbalancer.Sources, b Overrider, log *slog.Logger) *BalancerSink {
	s := &BalancerSink{sources: sources, b: b, log: log, applied: map[string]applied{}}
	sources.AfterApply = s.reconcile
	return s
}

// SetFleetBackends implements Sink.
func (s *BalancerSink) SetFleetBackends(b []config.Backend) error {
	return s.sources.SetFleetBackends(b)
}

// SetFleetSettings implements Sink.
func (s *BalancerSink) SetFleetSettings(name string, doc []byte) error {
	return s.sources.SetFleetSettings(name, doc)
}

// SetFleetOverrides implements Sink.
func (s *BalancerSink) SetFleetOverrides(o map[string]Override) {
	s.mu.Lock()
	s.want = o
	s.mu.Unlock()
	s.reconcile()
}

// reconcile applies to each backend the fleet's override of its name, where
// it differs from what was applied to that very backend.
func (s *BalancerSink) reconcile() {
	s.mu.Lock()
	defer s.mu.Unlock()
	present := map[string]bool{}
	for _, b := range s.b.Config().Backends {
		present[b.Name] = true
		want := s.want[b.Name]
		had, ok := s.applied[b.Name]
		if !ok || had.id != b.ID || had.address != b.Address {
			had = applied{id: b.ID, address: b.Address} // a new backend: nothing applied to it
		}
		if want == had.o {
			continue
		}
		if err := s.apply(b.ID, want, had.o); err != nil {
			s.log.Error("fleet override not applied", "backend", b.Name, "id", b.ID, "override", want, "error", err)
			continue
		}
		s.log.Info("fleet override applied", "backend", b.Name, "id", b.ID, "state", want.State, "weight", want.Weight)
		if want == (Override{}) {
			delete(s.applied, b.Name)
		} else {
			s.applied[b.Name] = applied{id: b.ID, address: b.Address, o: want}
		}
	}
	for name := range s.applied {
		if !present[name] {
			delete(s.applied, name) // the backend went, and its overrides with it
		}
	}
}

// apply moves backend id from the override have to want.
func (s *BalancerSink) apply(id int, want, have Override) error {
	// Undoing a state or a weight takes an enable, then what remains; a
	// drain becomes a disable directly (no moment of taking connections).
	drainToDisable := have.State == loadbalancer.OverrideDrain && want.State == loadbalancer.OverrideDisable
	if (have.State != "" && want.State != have.State && !drainToDisable) || (have.Weight != 0 && want.Weight == 0) {
		if _, err := s.b.EnableBackend(id); err != nil {
			return err
		}
		have = Override{}
	}
	var err error
	switch {
	case want.State == have.State:
	case want.State == loadbalancer.OverrideDrain:
		_, err = s.b.DrainBackend(id)
	case want.State == loadbalancer.OverrideDisable:
		_, err = s.b.DisableBackend(id)
	}
	if err == nil && want.Weight != 0 && want.Weight != have.Weight {
		_, err = s.b.SetBackendWeight(id, want.Weight)
	}
	return err
}
