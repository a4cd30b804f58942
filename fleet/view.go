package fleet

import (
	"context"
	"encoding/json"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// View is what etcd holds for a fleet, as operators read it.
type View struct {
	Prefix    string                         `json:"prefix"`
	Pools     map[string][]Member            `json:"pools"`               // by pool name, by key order
	Overrides map[string]map[string]Override `json:"overrides,omitempty"` // by pool, then backend name
	Settings  *string                        `json:"settings"`            // PREFIX/config; nil when not set
	Balancers map[string]Balancer            `json:"balancers"`           // by id
	Problems  []string                       `json:"problems,omitempty"`  // keys whose values do not parse
}

// Member is one registered backend.
type Member struct {
	Name string `json:"name"`
	Registration
}

// Read reads the whole fleet under k once.
func Read(ctx context.Context, cli *clientv3.Client, k Keys) (View, error) {
	resp, err := cli.Get(ctx, k.Prefix+"/", clientv3.WithPrefix())
	if err != nil {
		return View{}, err
	}
	v := View{Prefix: k.Prefix, Pools: map[string][]Member{}, Overrides: map[string]map[string]Override{}, Balancers: map[string]Balancer{}}
	for _, kv := range resp.Kvs {
		key, rest := string(kv.Key), strings.TrimPrefix(string(kv.Key), k.Prefix+"/")
		parts := strings.Split(rest, "/")
		switch {
		case key == k.Config():
			doc := string(kv.Value)
			v.Settings = &doc
		case len(parts) == 4 && parts[0] == "pools" && parts[2] == "backends":
			if _, err := ParseBackend(k, parts[1], key, kv.Value); err != nil {
				v.Problems = append(v.Problems, err.Error())
				continue
			}
			var r Registration
			_ = json.Unmarshal(kv.Value, &r) // parsed above
			if r.Weight == 0 {
				r.Weight = 1
			}
			v.Pools[parts[1]] = append(v.Pools[parts[1]], Member{Name: parts[3], Registration: r})
		case len(parts) == 3 && parts[0] == "overrides":
			o, err := parseOverride(key, kv.Value)
			if err != nil {
				v.Problems = append(v.Problems, err.Error())
				continue
			}
			if v.Overrides[parts[1]] == nil {
				v.Overrides[parts[1]] = map[string]Override{}
			}
			v.Overrides[parts[1]][parts[2]] = o
		case len(parts) == 2 && parts[0] == "balancers":
			var b Balancer
			if err := json.Unmarshal(kv.Value, &b); err != nil {
				v.Problems = append(v.Problems, key+": "+err.Error())
				continue
			}
			v.Balancers[parts[1]] = b
		}
	}
	return v, nil
}
