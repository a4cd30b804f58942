package loadbalancer

import (
	"fmt"
	"reflect"

	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

// Diff is what applying a config changes in the running system: what Apply
// did, or what Plan says it would do. Backends are matched by id; a backend
// whose address changed is a new backend, and the old one drains.
type Diff struct {
	Added      []BackendRef   `json:"backends_added"`      // new ids, or ids at a new address
	Drained    []BackendRef   `json:"backends_drained"`    // removed or replaced: no new connections, open ones finish
	Reweighted []WeightChange `json:"backends_reweighted"` // kept backends whose weight in force changes
	Renamed    []NameChange   `json:"backends_renamed"`    // kept backends whose name changes
	// OverridesDropped are operator overrides of backends the config
	// removes or replaces: they belonged to the old backend.
	OverridesDropped []BackendRef `json:"overrides_dropped"`
	Strategy         *Change      `json:"strategy,omitempty"`       // nil: unchanged
	ListenAddress    *Change      `json:"listen_address,omitempty"` // nil: unchanged
	// Settings names the other sections that change: proxy, health,
	// adaptive, runtime, and admin and discovery (read at start: they take
	// a restart).
	Settings []string `json:"settings_changed"`

	keep []*backend.Backend // per backend of the new config: the running one kept, or nil for a new one
	gone []*backend.Backend // running backends the new config drops
}

// BackendRef names a backend in a Diff.
type BackendRef struct {
	ID      int    `json:"id"`
	Name    string `json:"name"`
	Address string `json:"address"`
}

// WeightChange is a backend's weight before and after.
type WeightChange struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
	From int    `json:"from"`
	To   int    `json:"to"`
}

// NameChange is a backend's name before and after.
type NameChange struct {
	ID   int    `json:"id"`
	From string `json:"from"`
	To   string `json:"to"`
}

// Change is a setting before and after.
type Change struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// diff compares cfg with what runs: old, the running config; pool, the
// running backends; overrides, the operator's. Apply and Plan both use it, so
// a dry run reports exactly what an apply would do. The weights compared are
// those in force: a weight override outlives a reload that keeps its backend.
func diff(old, cfg *config.Config, pool []*backend.Backend, overrides map[int]override) Diff {
	d := Diff{
		Added: []BackendRef{}, Drained: []BackendRef{}, Reweighted: []WeightChange{}, Renamed: []NameChange{},
		OverridesDropped: []BackendRef{}, Settings: []string{},
		keep: make([]*backend.Backend, len(cfg.Backends)),
	}
	current := make(map[int]*backend.Backend, len(pool))
	for _, be := range pool {
		current[be.ID] = be
	}
	for i, bc := range cfg.Backends {
		be, ok := current[bc.ID]
		if !ok || be.Address != bc.Address {
			d.Added = append(d.Added, BackendRef{bc.ID, bc.Name, bc.Address})
			continue
		}
		delete(current, bc.ID)
		d.keep[i] = be
		if be.Name() != bc.Name {
			d.Renamed = append(d.Renamed, NameChange{bc.ID, be.Name(), bc.Name})
		}
		if w := weightFor(bc, overrides); be.Weight() != w {
			d.Reweighted = append(d.Reweighted, WeightChange{bc.ID, bc.Name, be.Weight(), w})
		}
	}
	for _, be := range pool { // in pool order, so the report is stable
		if current[be.ID] != be {
			continue
		}
		ref := BackendRef{be.ID, be.Name(), be.Address}
		d.gone = append(d.gone, be)
		d.Drained = append(d.Drained, ref)
		if _, ok := overrides[be.ID]; ok {
			d.OverridesDropped = append(d.OverridesDropped, ref)
		}
	}
	if cfg.Strategy != old.Strategy {
		d.Strategy = &Change{old.Strategy, cfg.Strategy}
	}
	if cfg.Proxy.ListenAddress != old.Proxy.ListenAddress {
		d.ListenAddress = &Change{old.Proxy.ListenAddress, cfg.Proxy.ListenAddress}
	}
	for _, s := range []struct {
		name    string
		changed bool
	}{
		{"proxy", proxySettings(cfg) != proxySettings(old)},
		{"health", healthSettings(cfg) != healthSettings(old)},
		{"adaptive", cfg.Adaptive != old.Adaptive},
		{"runtime", cfg.Runtime != old.Runtime},
		{"admin", cfg.Admin != old.Admin},
		{"discovery", !reflect.DeepEqual(cfg.Discovery, old.Discovery)},
	} {
		if s.changed {
			d.Settings = append(d.Settings, s.name)
		}
	}
	return d
}

// weightFor is the weight a kept backend runs with under cfg: the
// operator's, when an override set one, else the config's.
func weightFor(bc config.Backend, overrides map[int]override) int {
	if ov, ok := overrides[bc.ID]; ok && ov.weight != 0 {
		return ov.weight
	}
	return bc.Weight
}

// Summary is the diff in one line per change, as the log shows it.
func (d Diff) Summary() []string {
	var s []string
	add := func(format string, args ...any) { s = append(s, fmt.Sprintf(format, args...)) }
	for _, b := range d.Added {
		add("backend %d added at %s", b.ID, b.Address)
	}
	for _, n := range d.Renamed {
		add("backend %d renamed %s→%s", n.ID, n.From, n.To)
	}
	for _, w := range d.Reweighted {
		add("backend %d weight %d→%d", w.ID, w.From, w.To)
	}
	for _, b := range d.Drained {
		add("backend %d at %s draining", b.ID, b.Address)
	}
	for _, b := range d.OverridesDropped {
		add("override of backend %d at %s dropped with it", b.ID, b.Address)
	}
	if d.Strategy != nil {
		add("strategy %s→%s", d.Strategy.From, d.Strategy.To)
	}
	if d.ListenAddress != nil {
		add("listening on %s instead of %s", d.ListenAddress.To, d.ListenAddress.From)
	}
	for _, name := range d.Settings {
		if name == "admin" || name == "discovery" {
			add("%s settings (read at start: restart to apply)", name)
			continue
		}
		add("%s settings", name)
	}
	if len(s) == 0 {
		s = append(s, "no change")
	}
	return s
}
