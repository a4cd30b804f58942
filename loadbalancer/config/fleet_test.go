package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The fleet's shared settings lie over the file's keys, under the
// environment; a problem in them names the overlay and the key.
// loadFile is Load with the environment lookup passed in.
func loadFile(path string, lookupEnv func(string) (string, bool)) (*Config, error) {
	c, _, err := load(path, Fleet{}, lookupEnv)
	return c, err
}

func TestLoadWithSettings(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lb.yaml")
	if err := os.WriteFile(path, []byte("strategy: round_robin\nhealth: {interval: 2000, rise: 4}\nbackends:\n  - address: 127.0.0.1:50510\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ov := Fleet{Name: "etcd /lemonade/config", Settings: []byte("strategy: least_connections\nhealth: {interval: 500}\n")}
	c, _, err := load(path, ov, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Strategy != "least_connections" || c.Health.Interval != 500*time.Millisecond || c.Health.Rise != 4 || len(c.Backends) != 1 {
		t.Errorf("strategy %s, health %+v, %d backends; want the overlay's strategy and interval, the file's rise and backend", c.Strategy, c.Health, len(c.Backends))
	}
	// The environment still wins over both.
	if c, _, err := load(path, ov, env(map[string]string{"LEMONADE_LB_STRATEGY": "adaptive"})); err != nil || c.Strategy != "adaptive" {
		t.Errorf("with LEMONADE_LB_STRATEGY: %v, %v", c, err)
	}

	for doc, want := range map[string]string{
		"strategy: random\n":                            `etcd /lemonade/config: strategy: unknown value "random"`,
		"health: {intervall: 5}\n":                      "etcd /lemonade/config: health.intervall: unknown key",
		"backends:\n  - address: 127.0.0.1:1\n":         "etcd /lemonade/config: backends: not allowed here",
		"discovery: {etcd: {prefix: /x}}\n":             "etcd /lemonade/config: discovery: not allowed here",
		"health: {timeout: soon}\n":                     "etcd /lemonade/config: health.timeout",
		"- a list\n":                                    "etcd /lemonade/config",
		"strategy: [round_robin]\nstrategy: adaptive\n": "etcd /lemonade/config",
	} {
		_, _, err := load(path, Fleet{Name: "etcd /lemonade/config", Settings: []byte(doc)}, env(nil))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("overlay %q: %v; want an error saying %q", doc, err, want)
		}
	}
}

func TestDiscoverySettings(t *testing.T) {
	// With discovery on, a file may list no backend: they come from the fleet.
	c, err := Parse([]byte("discovery: {etcd: {endpoints: [\"127.0.0.1:2379\"]}}\n"), "yaml", "lb.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Discovery.Etcd.Enabled() || c.Discovery.Etcd.Prefix != DefaultEtcdPrefix || c.Discovery.Etcd.DialTimeout != 5*time.Second || len(c.Backends) != 0 {
		t.Errorf("discovery %+v, backends %v", c.Discovery, c.Backends)
	}
	c, err = loadFile("", env(map[string]string{
		"LEMONADE_LB_DISCOVERY_ETCD_ENDPOINTS": "127.0.0.1:2379, 127.0.0.2:2379,",
		"LEMONADE_LB_DISCOVERY_ETCD_PREFIX":    "/fleet",
		"LEMONADE_LB_DISCOVERY_ETCD_USERNAME":  "lb",
		"LEMONADE_LB_DISCOVERY_ETCD_PASSWORD":  "pw",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if e := c.Discovery.Etcd; len(e.Endpoints) != 2 || e.Endpoints[1] != "127.0.0.2:2379" || e.Prefix != "/fleet" || e.Username != "lb" || e.Password != "pw" {
		t.Errorf("from the environment: %+v", e)
	}

	for doc, want := range map[string]string{
		"endpoints: [\"nohost\"]":                                  "discovery.etcd.endpoints[0]",
		"endpoints: [\"127.0.0.1:2379\"], prefix: x":               `discovery.etcd.prefix: must start with "/"`,
		"endpoints: [\"127.0.0.1:2379\"], prefix: /x/":             `must not end with "/"`,
		"endpoints: [\"127.0.0.1:2379\"], prefix: /":               "must name a directory",
		"endpoints: [\"127.0.0.1:2379\"], prefix: /a//b":           "empty segment",
		"endpoints: [\"127.0.0.1:2379\"], username: u":             "set both discovery.etcd.username and discovery.etcd.password",
		"endpoints: [\"127.0.0.1:2379\"], tls: {cert_file: c.pem}": "discovery.etcd.tls.cert_file",
		"endpoints: [\"127.0.0.1:2379\"], dial_timeout: 0":         "discovery.etcd.dial_timeout: must be positive",
		"tls: {ca_file: ca.pem}":                                   "discovery.etcd.endpoints: required",
	} {
		_, err := Parse([]byte("backends: [{address: \"127.0.0.1:1\"}]\ndiscovery: {etcd: {"+doc+"}}\n"), "yaml", "lb.yaml")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want an error saying %q", doc, err, want)
		}
	}
	// The password is a secret: a bad value from the environment is not repeated.
	_, err = loadFile("", env(map[string]string{"LEMONADE_LB_DISCOVERY_ETCD_PASSWORD": "hunter2"}))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("a password without endpoints: %v; want an error that does not repeat it", err)
	}
}

// Discovered backends join the file's; one that clashes with a file backend
// is left out and returned, and the retries follow the whole list.
func TestLoadWithDiscoveredBackends(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lb.yaml")
	if err := os.WriteFile(path, []byte("backends:\n  - address: 127.0.0.1:50510\n  - {id: 5, name: named, address: 127.0.0.1:50511}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	found := []Backend{
		{ID: 1 << 30, Name: "w1", Address: "127.0.0.1:50520", Weight: 1},
		{ID: 1<<30 + 1, Name: "w2", Address: "127.0.0.1:50510", Weight: 1},        // a file backend's address
		{ID: 1<<30 + 2, Name: "backend-0", Address: "127.0.0.1:50522", Weight: 1}, // the file's first backend's name
		{ID: 5, Name: "w4", Address: "127.0.0.1:50523", Weight: 1},                // a file backend's id
		{ID: 1<<30 + 4, Name: "w5", Address: "127.0.0.1:50524", Weight: 2},
	}
	c, dropped, err := load(path, Fleet{Name: "etcd", Backends: found}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range c.Backends {
		names = append(names, b.Name)
	}
	if strings.Join(names, " ") != "backend-0 named w1 w5" || len(dropped) != 3 || *c.Proxy.Retries != 3 {
		t.Errorf("backends %v, dropped %v, retries %d; want the file's two, w1 and w5, three dropped, 3 retries", names, dropped, *c.Proxy.Retries)
	}
	// No backend at all, with discovery on: valid, and nothing to retry.
	c, _, err = load("", Fleet{}, env(map[string]string{"LEMONADE_LB_DISCOVERY_ETCD_ENDPOINTS": "127.0.0.1:2379"}))
	if err != nil || len(c.Backends) != 0 || *c.Proxy.Retries != 0 {
		t.Errorf("no backend yet: %v, %v", c, err)
	}
}

func TestCheckBackend(t *testing.T) {
	if err := CheckBackend(Backend{ID: 1 << 30, Name: "w", Address: "127.0.0.1:80", Weight: 1}); err != nil {
		t.Errorf("a good backend: %v", err)
	}
	for b, want := range map[Backend]string{
		{ID: 1, Name: "w", Address: "nohost", Weight: 1}:        "backends[0].address",
		{ID: 1, Name: "w", Address: "127.0.0.1:80", Weight: 0}:  "backends[0].weight: must be 1..255",
		{ID: -1, Name: "w", Address: "127.0.0.1:80", Weight: 1}: "backends[0].id",
	} {
		if err := CheckBackend(b); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckBackend(%+v) = %v; want an error saying %q", b, err, want)
		}
	}
}

// With discovery, retries beyond the pool's other backends mean those: the
// pool's size changes at run time, and a rebuild must not fail for it.
func TestRetriesFollowADiscoveredPool(t *testing.T) {
	found := []Backend{{ID: 1 << 30, Name: "w1", Address: "127.0.0.1:50520", Weight: 1}}
	doc := []byte("proxy: {retries: 2}\nbackends: [{address: \"127.0.0.1:50510\"}]\ndiscovery: {etcd: {endpoints: [\"127.0.0.1:2379\"]}}\n")
	path := filepath.Join(t.TempDir(), "lb.yaml")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	c, _, err := loadData(path, doc, Fleet{Backends: found}, env(nil))
	if err != nil || *c.Proxy.Retries != 1 {
		t.Fatalf("retries 2 over two backends: %v, %v; want 1", c, err)
	}
	// Without discovery the same is an error, as before.
	if _, err := Parse([]byte("proxy: {retries: 2}\nbackends: [{address: \"127.0.0.1:50510\"}]\n"), "yaml", "lb.yaml"); err == nil || !strings.Contains(err.Error(), "proxy.retries") {
		t.Errorf("retries 2 over one backend without discovery: %v", err)
	}
}
