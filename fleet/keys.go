// Package fleet runs Lemonade as a fleet through etcd: workers (or any
// process) register themselves as backends of a pool, and balancers watch
// the pools and the shared settings, feeding the same validated changes a
// config file reload does (loadbalancer.Sources). The key layout lives here,
// in one place; docs/fleet.md describes it for non-Lemonade backends.
//
// Keys, under a prefix such as /lemonade:
//
//	PREFIX/pools/POOL/backends/NAME   a backend: {"address": "10.0.0.5:8080", "weight": 1, "framework": "gin"}, under a lease
//	PREFIX/config                     the shared balancer settings (YAML or JSON), laid over each balancer's file
//
// Pools are the unit of discovery: today a balancer serves DefaultPool.
package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

// DefaultPool is the pool a balancer serves and a worker joins unless told
// otherwise.
const DefaultPool = "default"

// Registration is the value of a backend's key: JSON, as any process that
// joins a pool writes it.
type Registration struct {
	Address   string `json:"address"`             // host:port the balancers connect to
	Weight    int    `json:"weight,omitempty"`    // config.MinWeight..MaxWeight; 0 or absent means 1
	Framework string `json:"framework,omitempty"` // informational: what serves it ("gin", "redis"...)
}

// Keys is the key layout under one prefix.
type Keys struct {
	Prefix string // "/" and a path, no trailing "/": "/lemonade"
}

// Pool is the prefix of every backend key of pool, ending in "/".
func (k Keys) Pool(pool string) string { return k.Prefix + "/pools/" + pool + "/backends/" }

// Backend is the key of the backend name in pool.
func (k Keys) Backend(pool, name string) string { return k.Pool(pool) + name }

// Config is the key of the shared balancer settings.
func (k Keys) Config() string { return k.Prefix + "/config" }

// CheckName says what is wrong with a pool or backend name used in a key: it
// must be a non-empty path segment of printable ASCII.
func CheckName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s name is empty", what)
	case strings.ContainsAny(name, "/ "):
		return fmt.Errorf("%s name %q: must not contain \"/\" or spaces", what, name)
	}
	for _, r := range name {
		if r < 0x21 || r > 0x7e {
			return fmt.Errorf("%s name %q: printable ASCII only", what, name)
		}
	}
	return nil
}

// backendIDBase is where discovered backends' ids start: far above any id a
// config file uses.
const backendIDBase = 1 << 30

// BackendID is the id of the backend registered at key: derived from the key
// alone, so a worker that registers again keeps its id (and its counters).
func BackendID(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return backendIDBase + int(h.Sum32()%backendIDBase)
}

// ParseBackend reads the registration at key in pool (a key under
// Keys.Pool(pool)) as a config.Backend named after the key, checked by the
// rules a config file's backends follow.
func ParseBackend(k Keys, pool, key string, value []byte) (config.Backend, error) {
	name, ok := strings.CutPrefix(key, k.Pool(pool))
	if !ok {
		return config.Backend{}, fmt.Errorf("%s: not a backend of pool %s", key, pool)
	}
	if err := CheckName("backend", name); err != nil {
		return config.Backend{}, fmt.Errorf("%s: %w", key, err)
	}
	var r Registration
	dec := json.NewDecoder(strings.NewReader(string(value)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return config.Backend{}, fmt.Errorf("%s: want JSON like {\"address\": \"10.0.0.5:8080\", \"weight\": 1}: %w", key, err)
	}
	if dec.More() {
		return config.Backend{}, fmt.Errorf("%s: more than one JSON value", key)
	}
	if r.Weight == 0 {
		r.Weight = 1
	}
	b := config.Backend{ID: BackendID(key), Name: name, Address: r.Address, Weight: r.Weight}
	if err := config.CheckBackend(b); err != nil {
		var verr *config.ValidationError
		if errors.As(err, &verr) && len(verr.Problems) > 0 {
			err = errors.New(strings.ReplaceAll(strings.Join(verr.Problems, "; "), "backends[0].", ""))
		}
		return config.Backend{}, fmt.Errorf("%s: %w", key, err)
	}
	return b, nil
}
