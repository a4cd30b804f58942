package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"

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
// backends by name, again whenever its backends change. One Watcher calls
// it, from one goroutine.
type BalancerSink struct {
	Sources *loadbalancer.Sources
	B       Overrider
	Log     *slog.Logger

	want    map[string]Override // the fleet's, by backend name
	applied map[string]Override // what this balancer applied of them
}

// SetFleetBackends implements Sink.
func (s *BalancerSink) SetFleetBackends(b []config.Backend) error {
	err := s.Sources.SetFleetBackends(b)
	s.reconcile()
	return err
}

// SetFleetSettings implements Sink.
func (s *BalancerSink) SetFleetSettings(name string, doc []byte) error {
	err := s.Sources.SetFleetSettings(name, doc)
	s.reconcile()
	return err
}

// SetFleetOverrides implements Sink.
func (s *BalancerSink) SetFleetOverrides(o map[string]Override) {
	s.want = o
	s.reconcile()
}

// reconcile applies to each backend the fleet's override of its name, where
// it differs from what was applied.
func (s *BalancerSink) reconcile() {
	if s.applied == nil {
		s.applied = map[string]Override{}
	}
	present := map[string]bool{}
	for _, b := range s.B.Config().Backends {
		present[b.Name] = true
		want, have := s.want[b.Name], s.applied[b.Name]
		if want == have {
			continue
		}
		if err := s.apply(b.ID, want, have); err != nil {
			s.Log.Error("fleet override not applied", "backend", b.Name, "id", b.ID, "override", want, "error", err)
			continue
		}
		s.Log.Info("fleet override applied", "backend", b.Name, "id", b.ID, "state", want.State, "weight", want.Weight)
		if want == (Override{}) {
			delete(s.applied, b.Name)
		} else {
			s.applied[b.Name] = want
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
	// Undoing a state or a weight takes an enable, then what remains.
	if (have.State != "" && want.State != have.State) || (have.Weight != 0 && want.Weight == 0) {
		if _, err := s.B.EnableBackend(id); err != nil {
			return err
		}
		have = Override{}
	}
	var err error
	switch {
	case want.State == have.State:
	case want.State == loadbalancer.OverrideDrain:
		_, err = s.B.DrainBackend(id)
	case want.State == loadbalancer.OverrideDisable:
		_, err = s.B.DisableBackend(id)
	}
	if err == nil && want.Weight != 0 && want.Weight != have.Weight {
		_, err = s.B.SetBackendWeight(id, want.Weight)
	}
	return err
}
