package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/configfile"
	"github.com/lemonade-lb/lemonade/loadbalancer/strategy"
	"github.com/spf13/viper"
)

// env returns a lookup over m, standing in for os.LookupEnv.
func env(m map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}

func intp(n int) *int { return &n }

// seedConfig is what the seed README's load-balancer.yaml means.
func seedConfig() *Config {
	c := Default()
	c.Backends = []Backend{
		{ID: 0, Name: "worker-hyper", Address: "127.0.0.1:50510", Weight: 1},
		{ID: 1, Name: "worker-axum", Address: "127.0.0.1:50520", Weight: 1},
	}
	c.Proxy.Retries = intp(1)
	return c
}

func mustLoad(t *testing.T, path string, vars map[string]string) *Config {
	t.Helper()
	c, err := loadFile(path, env(vars))
	if err != nil {
		t.Fatalf("load %q: %v", path, err)
	}
	return c
}

func TestSeedExampleInEveryFormat(t *testing.T) {
	for _, path := range []string{"testdata/seed.yaml", "testdata/seed.json", "testdata/seed.toml"} {
		t.Run(path, func(t *testing.T) {
			if got := mustLoad(t, path, nil); !reflect.DeepEqual(got, seedConfig()) {
				t.Errorf("got  %+v\nwant %+v", got, seedConfig())
			}
		})
	}
}

// The repository's example files must keep the seed's keys and values.
func TestRepositoryExamplesAreTheSeed(t *testing.T) {
	settings := func(path string) map[string]any {
		v := viper.New()
		if err := configfile.Read(v, path); err != nil {
			t.Fatal(err)
		}
		return v.AllSettings()
	}
	if got, want := settings("../../config/load-balancer.yaml"), settings("testdata/seed.yaml"); !reflect.DeepEqual(got, want) {
		t.Errorf("config/load-balancer.yaml has\n%v\nthe seed has\n%v", got, want)
	}
	for _, name := range []string{"load-balancer.yaml", "load-balancer.json", "load-balancer.toml"} {
		t.Run(name, func(t *testing.T) {
			if got := mustLoad(t, filepath.Join("..", "..", "config", name), nil); !reflect.DeepEqual(got, seedConfig()) {
				t.Errorf("got  %+v\nwant %+v", got, seedConfig())
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	got, err := Parse([]byte("backends:\n  - address: 127.0.0.1:50510\n"), "yaml", "min.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Backends = []Backend{{ID: 0, Name: "backend-0", Address: "127.0.0.1:50510", Weight: 1}}
	want.Proxy.Retries = intp(0)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if err := Default().Validate(); err == nil || !strings.Contains(err.Error(), "at least one backend") || strings.Count(err.Error(), "\n") > 0 {
		t.Errorf("Default().Validate() = %v, want only the missing backends", err)
	}
}

func TestEveryKeySet(t *testing.T) {
	doc := `
runtime: {metrics_cap: 1, health_cap: 2, drain_timeout_millis: 3, background_timeout_millis: "4s", accept_timeout_millis: 5, config_watch_interval_millis: "6ms"}
proxy: {listen_address: "0.0.0.0:7000", max_connections: 0, connect_timeout: 250, retries: 2, idle_timeout: "1m"}
strategy: adaptive
backends:
  - {id: 7, name: a, address: "a.internal:80", weight: 255}
  - {id: 3, address: "[::1]:81"}
  - {address: "10.0.0.1:82", weight: 2}
health: {kind: http, path: /healthz, interval: 1000, timeout: "500ms", rise: 1, fall: 5, passive: {max_fails: 5, fail_duration: 30000}}
metrics: {interval: "1s", timeout: 100}
adaptive: {connection_weight: 0, latency_weight: 1, error_weight: 0.5}
admin: {listen_address: "127.0.0.1:50500"}
access_log: {path: "-", format: json}
otlp_endpoint: "localhost:4317"
otlp_protocol: http/protobuf
discovery:
  etcd:
    endpoints: ["127.0.0.1:2379", "etcd-2.internal:2379"]
    prefix: /fleet/eu
    username: lb
    password: pw
    dial_timeout: 2500
    tls: {ca_file: ca.pem, cert_file: lb.pem, key_file: lb-key.pem}
`
	got, err := Parse([]byte(doc), "yaml", "all.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Runtime: Runtime{MetricsCap: 1, HealthCap: 2, DrainTimeout: 3 * time.Millisecond, BackgroundTimeout: 4 * time.Second,
			AcceptTimeout: 5 * time.Millisecond, ConfigWatchInterval: 6 * time.Millisecond},
		Proxy:    Proxy{ListenAddress: "0.0.0.0:7000", ConnectTimeout: 250 * time.Millisecond, Retries: intp(2), IdleTimeout: time.Minute},
		Strategy: "adaptive",
		Backends: []Backend{
			{ID: 7, Name: "a", Address: "a.internal:80", Weight: 255},
			{ID: 3, Name: "backend-3", Address: "[::1]:81", Weight: 1},
			{ID: 2, Name: "backend-2", Address: "10.0.0.1:82", Weight: 2},
		},
		Health: Health{Kind: HealthHTTP, Path: "/healthz", Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 1, Fall: 5,
			Passive: Passive{MaxFails: 5, FailDuration: 30 * time.Second}},
		Metrics:      Metrics{Interval: time.Second, Timeout: 100 * time.Millisecond},
		Adaptive:     strategy.AdaptiveWeights{LatencyWeight: 1, ErrorWeight: 0.5},
		Admin:        Admin{ListenAddress: "127.0.0.1:50500"},
		AccessLog:    AccessLog{Path: "-", Format: "json"},
		OTLPEndpoint: "localhost:4317",
		OTLPProtocol: OTLPHTTPProtobuf,
		Discovery: Discovery{Etcd: Etcd{Endpoints: []string{"127.0.0.1:2379", "etcd-2.internal:2379"}, Prefix: "/fleet/eu",
			Username: "lb", Password: "pw", DialTimeout: 2500 * time.Millisecond,
			TLS: EtcdTLS{CAFile: "ca.pem", CertFile: "lb.pem", KeyFile: "lb-key.pem"}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

const twoBackends = "backends:\n  - address: 127.0.0.1:50510\n  - address: 127.0.0.1:50520\n"

// TestRules has one case per validation rule. Each error must name the file,
// the key and the offending value, and be the only problem reported.
func TestRules(t *testing.T) {
	cases := []struct {
		name, doc string
		want      []string // substrings of the one problem
	}{
		{"unknown key", "bogus: 1\n" + twoBackends, []string{`lb.yaml: bogus: unknown key`}},
		{"unknown nested key", "proxy:\n  listen: x\n" + twoBackends, []string{`lb.yaml: proxy.listen: unknown key`}},
		{"unknown backend key", twoBackends + "    wieght: 2\n", []string{`lb.yaml: backends[1].wieght: unknown key`}},
		{"wrong type", "proxy:\n  max_connections: lots\n" + twoBackends, []string{"lb.yaml: proxy.max_connections:", "lots"}},
		{"bool for int", "health:\n  rise: true\n" + twoBackends, []string{"health.rise:", "true"}},
		{"fraction for int", twoBackends + "    weight: 1.5\n", []string{"backends[1].weight:", "1.5"}},
		{"bad duration", "health:\n  interval: soon\n" + twoBackends, []string{"health.interval:", `"soon"`}},

		{"listen not host:port", "proxy:\n  listen_address: localhost\n" + twoBackends, []string{"lb.yaml: proxy.listen_address:", `"localhost"`}},
		{"port too big", "proxy:\n  listen_address: 127.0.0.1:70000\n" + twoBackends, []string{"proxy.listen_address:", "70000", "..65535"}},
		{"backend port zero", "backends:\n  - address: 127.0.0.1:0\n", []string{"backends[0].address:", "127.0.0.1:0"}},
		{"port by name", "proxy:\n  listen_address: 127.0.0.1:http\n" + twoBackends, []string{"proxy.listen_address:", "127.0.0.1:http"}},
		{"port with sign", "proxy:\n  listen_address: 127.0.0.1:+80\n" + twoBackends, []string{"proxy.listen_address:", "+80"}},
		{"backend needs host", "backends:\n  - address: :50510\n", []string{"backends[0].address:", "host is empty"}},
		{"bad hostname", "backends:\n  - address: bad!host:80\n", []string{"backends[0].address:", `"bad!host"`}},
		{"mistyped ipv4", "backends:\n  - address: 999.1.1.1:80\n", []string{"backends[0].address:", `"999.1.1.1"`}},
		{"missing address", "backends:\n  - name: a\n", []string{"backends[0].address:", `"" is not HOST:PORT`}},
		{"duplicate id", "backends:\n  - {id: 4, address: 127.0.0.1:1}\n  - {id: 4, address: 127.0.0.1:2}\n", []string{"backends[1].id:", "4 is also the id of backends[0]"}},
		{"negative id", "backends:\n  - {id: -1, address: 127.0.0.1:1}\n", []string{"backends[0].id:", "-1"}},
		{"duplicate address", "backends:\n  - address: 127.0.0.1:1\n  - address: 127.0.0.1:1\n", []string{"backends[1].address:", `"127.0.0.1:1" is also the address of backends[0]`}},
		{"duplicate name", "backends:\n  - {name: a, address: 127.0.0.1:1}\n  - {name: a, address: 127.0.0.1:2}\n", []string{"backends[1].name:", `"a" is also the name of backends[0]`}},
		{"weight zero", "backends:\n  - {address: 127.0.0.1:1, weight: 0}\n", []string{"backends[0].weight:", "1..255, got 0"}},
		{"event loops negative", "proxy:\n  event_loops: -1\n" + twoBackends, []string{"proxy.event_loops:", "0..256", "got -1"}},
		{"event loops too many", "proxy:\n  event_loops: 257\n" + twoBackends, []string{"proxy.event_loops:", "got 257"}},
		{"weight too big", "backends:\n  - {address: 127.0.0.1:1, weight: 256}\n", []string{"backends[0].weight:", "got 256"}},
		{"no backends", "strategy: round_robin\n", []string{"lb.yaml: backends:", "at least one backend"}},
		{"empty backends", "backends: []\n", []string{"backends:", "at least one backend"}},

		{"unknown strategy", "strategy: random\n" + twoBackends, []string{"lb.yaml: strategy:", `"random"`, strings.Join(strategy.Names(), ", ")}},
		{"unknown health kind", "health:\n  kind: udp\n" + twoBackends, []string{"health.kind:", `"udp"`, "tcp, http"}},
		{"relative health path", "health:\n  path: health\n" + twoBackends, []string{"health.path:", `"health"`}},
		{"rise zero", "health:\n  rise: 0\n" + twoBackends, []string{"health.rise:", "got 0"}},
		{"fall zero", "health:\n  fall: 0\n" + twoBackends, []string{"health.fall:", "got 0"}},
		{"passive max fails negative", "health:\n  passive: {max_fails: -1}\n" + twoBackends, []string{"lb.yaml: health.passive.max_fails:", "0..32", "got -1"}},
		{"passive max fails too many", "health:\n  passive: {max_fails: 33}\n" + twoBackends, []string{"health.passive.max_fails:", "0..32", "got 33"}},
		{"passive duration zero", "health:\n  passive: {fail_duration: 0}\n" + twoBackends, []string{"lb.yaml: health.passive.fail_duration:", "positive when health.passive.max_fails is 3", "got 0s"}},
		{"passive duration negative", "health:\n  passive: {max_fails: 0, fail_duration: -1s}\n" + twoBackends, []string{"health.passive.fail_duration:", "got -1s"}},
		{"passive duration not a duration", "health:\n  passive: {fail_duration: soon}\n" + twoBackends, []string{"health.passive.fail_duration:", `"soon"`}},
		{"health interval zero", "health:\n  interval: 0\n" + twoBackends, []string{"health.interval:", "positive, got 0s"}},
		{"health timeout negative", "health:\n  timeout: -1s\n" + twoBackends, []string{"health.timeout:", "got -1s"}},
		{"metrics interval zero", "metrics:\n  interval: 0s\n" + twoBackends, []string{"metrics.interval:", "got 0s"}},
		{"metrics timeout zero", "metrics:\n  timeout: 0\n" + twoBackends, []string{"metrics.timeout:", "got 0s"}},
		{"drain zero", "runtime:\n  drain_timeout_millis: 0\n" + twoBackends, []string{"runtime.drain_timeout_millis:", "got 0s"}},
		{"watch zero", "runtime:\n  config_watch_interval_millis: 0\n" + twoBackends, []string{"runtime.config_watch_interval_millis:", "got 0s"}},
		{"connect timeout zero", "proxy:\n  connect_timeout: 0\n" + twoBackends, []string{"proxy.connect_timeout:", "got 0s"}},
		{"idle timeout negative", "proxy:\n  idle_timeout: -1ms\n" + twoBackends, []string{"proxy.idle_timeout:", "got -1ms"}},
		{"max connections negative", "proxy:\n  max_connections: -1\n" + twoBackends, []string{"proxy.max_connections:", "got -1"}},
		{"retries too many", "proxy:\n  retries: 2\n" + twoBackends, []string{"proxy.retries:", "0..1", "got 2"}},
		{"retries negative", "proxy:\n  retries: -1\n" + twoBackends, []string{"proxy.retries:", "got -1"}},

		{"adaptive negative", "adaptive:\n  error_weight: -0.5\n" + twoBackends, []string{"adaptive.error_weight:", "got -0.5"}},
		{"adaptive all zero", "adaptive: {connection_weight: 0, latency_weight: 0, error_weight: 0}\n" + twoBackends, []string{"adaptive:", "must not all be 0"}},
		{"admin bad", "admin:\n  listen_address: 127.0.0.1\n" + twoBackends, []string{"admin.listen_address:", `"127.0.0.1"`}},
		{"admin on proxy port", "admin:\n  listen_address: 127.0.0.1:50501\n" + twoBackends, []string{"admin.listen_address:", "also proxy.listen_address"}},
		{"admin public without token", "admin:\n  listen_address: 0.0.0.0:50500\n" + twoBackends, []string{"lb.yaml: admin.listen_address:", `"0.0.0.0:50500" is not a loopback address`, "admin.token"}},
		{"admin on every interface without token", "admin:\n  listen_address: \":50500\"\n" + twoBackends, []string{"admin.listen_address:", `":50500"`, "admin.token"}},
		{"admin by host name without token", "admin:\n  listen_address: admin.internal:50500\n" + twoBackends, []string{"admin.listen_address:", "admin.internal", "admin.token"}},
		{"admin token with a space", "admin:\n  token: \"two words\"\n" + twoBackends, []string{"lb.yaml: admin.token:", "printable ASCII without spaces"}},
		{"otlp protocol", "otlp_protocol: http\n" + twoBackends, []string{"otlp_protocol:", `"http"`, "grpc, http/protobuf"}},
		{"access log format", "access_log: {path: \"-\", format: xml}\n" + twoBackends, []string{"access_log.format:", `"xml"`, "text, json"}},
		{"access log in no directory", "access_log: {path: /nonexistent-dir/access.log}\n" + twoBackends, []string{"access_log.path:", `directory "/nonexistent-dir" does not exist`}},
		{"access log is a directory", "access_log: {path: /tmp}\n" + twoBackends, []string{"access_log.path:", `"/tmp" is a directory`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), "yaml", "lb.yaml")
			var verr *ValidationError
			if !errors.As(err, &verr) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want a *ValidationError", err)
			}
			if len(verr.Problems) != 1 {
				t.Fatalf("want exactly one problem, got %q", verr.Problems)
			}
			for _, want := range tc.want {
				if !strings.Contains(verr.Problems[0], want) {
					t.Errorf("problem %q does not contain %q", verr.Problems[0], want)
				}
			}
		})
	}
}

func TestValidValues(t *testing.T) {
	for name, doc := range map[string]string{
		"hostname":                "backends:\n  - address: worker-1.lemonade.internal:50510\n",
		"hostname with dot":       "backends:\n  - address: localhost.:50510\n",
		"ipv6":                    "backends:\n  - address: \"[::1]:50510\"\n",
		"ipv6 zone":               "backends:\n  - address: \"[fe80::1%eth0]:50510\"\n",
		"listen on all":           "proxy:\n  listen_address: \":50501\"\n" + twoBackends,
		"unlimited":               "proxy:\n  max_connections: 0\n" + twoBackends,
		"retries zero":            "proxy:\n  retries: 0\n" + twoBackends,
		"weights at bounds":       "backends:\n  - {address: 127.0.0.1:1, weight: 1}\n  - {address: 127.0.0.1:2, weight: 255}\n",
		"uppercase keys":          "Strategy: least_connections\nBackends:\n  - Address: 127.0.0.1:1\n",
		"string milliseconds":     "runtime:\n  drain_timeout_millis: \"5000\"\n" + twoBackends,
		"one adaptive factor":     "adaptive: {connection_weight: 0, latency_weight: 0, error_weight: 1}\n" + twoBackends,
		"every strategy valid":    "strategy: fastest_response_time\n" + twoBackends,
		"passive off":             "health:\n  passive: {max_fails: 0, fail_duration: 0}\n" + twoBackends,
		"passive at the bound":    "health:\n  passive: {max_fails: 32, fail_duration: \"1m\"}\n" + twoBackends,
		"admin public with token": "admin: {listen_address: \"0.0.0.0:50500\", token: \"s3cr3t-t0ken\"}\n" + twoBackends,
		"admin on localhost":      "admin: {listen_address: \"localhost:50500\"}\n" + twoBackends,
		"admin on ipv6 loopback":  "admin: {listen_address: \"[::1]:50500\"}\n" + twoBackends,
		"admin on 127/8":          "admin: {listen_address: \"127.1.2.3:50500\"}\n" + twoBackends,
		"both on a free port":     "proxy: {listen_address: \"127.0.0.1:0\"}\nadmin: {listen_address: \"127.0.0.1:0\"}\n" + twoBackends,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse([]byte(doc), "yaml", "ok.yaml"); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestEveryProblemAtOnce(t *testing.T) {
	doc := `
bogus: 1
strategy: random
proxy: {listen_address: nope, max_connections: -3}
backends:
  - {id: 1, address: "127.0.0.1:50510", weight: 0}
  - {id: 1, address: "127.0.0.1:50510"}
health: {kind: udp, path: x}
`
	_, err := Parse([]byte(doc), "yaml", "bad.yaml")
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("got %v", err)
	}
	for _, key := range []string{"bogus:", "strategy:", "proxy.listen_address:", "proxy.max_connections:",
		"backends[0].weight:", "backends[1].id:", "backends[1].address:", "health.kind:", "health.path:"} {
		if !strings.Contains(err.Error(), "\tbad.yaml: "+key) {
			t.Errorf("error does not mention %s:\n%v", key, err)
		}
	}
	if len(verr.Problems) != 9 {
		t.Errorf("want 9 problems, got %d:\n%v", len(verr.Problems), err)
	}
	for _, p := range verr.Problems {
		if !strings.HasPrefix(p, "bad.yaml: ") {
			t.Errorf("problem %q does not name the file", p)
		}
	}
}

func TestEnvironmentAlone(t *testing.T) {
	// The seed README's environment-only invocation.
	got := mustLoad(t, "", map[string]string{
		"LEMONADE_LB_LISTEN_ADDRESS":    "127.0.0.1:50501",
		"LEMONADE_LB_STRATEGY":          "round_robin",
		"LEMONADE_LB_BACKEND_ADDRESSES": "127.0.0.1:50510,127.0.0.1:50520",
	})
	want := seedConfig()
	want.Backends[0].Name, want.Backends[1].Name = "backend-0", "backend-1"
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestEnvironmentOverridesFile(t *testing.T) {
	got := mustLoad(t, "testdata/seed.yaml", map[string]string{
		"LEMONADE_LB_LISTEN_ADDRESS":           "0.0.0.0:8080",
		"LEMONADE_LB_STRATEGY":                 "weighted_round_robin",
		"LEMONADE_LB_BACKEND_ADDRESSES":        "fast=127.0.0.1:50510*3, 127.0.0.1:50530",
		"LEMONADE_LB_MAX_CONNECTIONS":          "0",
		"LEMONADE_LB_HEALTH_INTERVAL_MS":       "1500",
		"LEMONADE_LB_HEALTH_TIMEOUT_MS":        "250",
		"LEMONADE_LB_PASSIVE_MAX_FAILS":        "5",
		"LEMONADE_LB_PASSIVE_FAIL_DURATION_MS": "2500",
		"LEMONADE_LB_DRAIN_TIMEOUT_MS":         "10000",
		"LEMONADE_LB_CONFIG_WATCH_INTERVAL_MS": "2s",
		"LEMONADE_LB_ADMIN_ADDRESS":            "127.0.0.1:50500",
		"LEMONADE_LB_ADMIN_TOKEN":              "s3cret",
		"LEMONADE_LB_ACCESS_LOG":               "-",
		"LEMONADE_LB_ACCESS_LOG_FORMAT":        "json",
	})
	want := seedConfig()
	want.Proxy.ListenAddress = "0.0.0.0:8080"
	want.Strategy = "weighted_round_robin"
	want.Backends = []Backend{
		{ID: 0, Name: "fast", Address: "127.0.0.1:50510", Weight: 3},
		{ID: 1, Name: "backend-1", Address: "127.0.0.1:50530", Weight: 1},
	}
	want.Proxy.MaxConnections = 0
	want.Health.Interval = 1500 * time.Millisecond
	want.Health.Timeout = 250 * time.Millisecond
	want.Health.Passive = Passive{MaxFails: 5, FailDuration: 2500 * time.Millisecond}
	want.Runtime.DrainTimeout = 10 * time.Second
	want.Runtime.ConfigWatchInterval = 2 * time.Second
	want.Admin.ListenAddress = "127.0.0.1:50500"
	want.Admin.Token = "s3cret"
	want.AccessLog = AccessLog{Path: "-", Format: "json"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestEmptyEnvironmentVariablesAreIgnored(t *testing.T) {
	got := mustLoad(t, "testdata/seed.yaml", map[string]string{
		"LEMONADE_LB_STRATEGY":          "",
		"LEMONADE_LB_BACKEND_ADDRESSES": "  ",
	})
	if !reflect.DeepEqual(got, seedConfig()) {
		t.Errorf("got %+v", got)
	}
}

func TestEnvironmentErrors(t *testing.T) {
	cases := []struct {
		name, value string
		want        []string
	}{
		{"LEMONADE_LB_MAX_CONNECTIONS", "lots", []string{`LEMONADE_LB_MAX_CONNECTIONS="lots"`, "integer"}},
		{"LEMONADE_LB_MAX_CONNECTIONS", "-1", []string{`LEMONADE_LB_MAX_CONNECTIONS="-1": proxy.max_connections:`}},
		{"LEMONADE_LB_HEALTH_INTERVAL_MS", "soon", []string{`LEMONADE_LB_HEALTH_INTERVAL_MS="soon"`, "duration"}},
		{"LEMONADE_LB_HEALTH_TIMEOUT_MS", "0", []string{`LEMONADE_LB_HEALTH_TIMEOUT_MS="0": health.timeout: must be positive`}},
		{"LEMONADE_LB_PASSIVE_MAX_FAILS", "many", []string{`LEMONADE_LB_PASSIVE_MAX_FAILS="many"`, "integer"}},
		{"LEMONADE_LB_PASSIVE_MAX_FAILS", "100", []string{`LEMONADE_LB_PASSIVE_MAX_FAILS="100": health.passive.max_fails:`, "got 100"}},
		{"LEMONADE_LB_PASSIVE_FAIL_DURATION_MS", "0", []string{`LEMONADE_LB_PASSIVE_FAIL_DURATION_MS="0": health.passive.fail_duration:`, "got 0s"}},
		{"LEMONADE_LB_PASSIVE_FAIL_DURATION_MS", "later", []string{`LEMONADE_LB_PASSIVE_FAIL_DURATION_MS="later"`, "duration"}},
		{"LEMONADE_LB_DRAIN_TIMEOUT_MS", "-5", []string{`LEMONADE_LB_DRAIN_TIMEOUT_MS="-5": runtime.drain_timeout_millis:`}},
		{"LEMONADE_LB_CONFIG_WATCH_INTERVAL_MS", "x", []string{`LEMONADE_LB_CONFIG_WATCH_INTERVAL_MS="x"`}},
		{"LEMONADE_LB_STRATEGY", "random", []string{`LEMONADE_LB_STRATEGY="random": strategy:`, "round_robin"}},
		{"LEMONADE_LB_LISTEN_ADDRESS", "nope", []string{`LEMONADE_LB_LISTEN_ADDRESS="nope": proxy.listen_address:`}},
		{"LEMONADE_LB_ADMIN_ADDRESS", "127.0.0.1:50501", []string{`LEMONADE_LB_ADMIN_ADDRESS="127.0.0.1:50501": admin.listen_address:`}},
		{"LEMONADE_LB_ADMIN_ADDRESS", "0.0.0.0:50500", []string{`LEMONADE_LB_ADMIN_ADDRESS="0.0.0.0:50500": admin.listen_address:`, "admin.token"}},
		{"LEMONADE_LB_ADMIN_TOKEN", "bad token", []string{"LEMONADE_LB_ADMIN_TOKEN: admin.token: must be printable"}},
		{"LEMONADE_LB_ACCESS_LOG_FORMAT", "csv", []string{`LEMONADE_LB_ACCESS_LOG_FORMAT="csv": access_log.format:`}},
		{"LEMONADE_LB_BACKEND_ADDRESSES", "127.0.0.1:50510*0", []string{`LEMONADE_LB_BACKEND_ADDRESSES="127.0.0.1:50510*0": backends[0].weight:`}},
		{"LEMONADE_LB_BACKEND_ADDRESSES", "a,,b", []string{`LEMONADE_LB_BACKEND_ADDRESSES="a,,b"`, `backends[1] ""`}},
		{"LEMONADE_LB_BACKEND_ADDRESSES", "127.0.0.1:1,127.0.0.1:1", []string{"backends[1].address:", "also the address"}},
	}
	for _, tc := range cases {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			_, err := loadFile("testdata/seed.yaml", env(map[string]string{tc.name: tc.value}))
			var verr *ValidationError
			if !errors.As(err, &verr) || len(verr.Problems) != 1 {
				t.Fatalf("want one problem, got %v", err)
			}
			for _, want := range tc.want {
				if !strings.Contains(verr.Problems[0], want) {
					t.Errorf("problem %q does not contain %q", verr.Problems[0], want)
				}
			}
		})
	}
}

// The token is a secret: a problem with it never repeats it.
func TestTokenIsNeverEchoed(t *testing.T) {
	for name, load := range map[string]func() error{
		"file": func() error {
			_, err := Parse([]byte("admin: {token: \"s3cret with space\"}\n"+twoBackends), "yaml", "lb.yaml")
			return err
		},
		"environment": func() error {
			_, err := loadFile("testdata/seed.yaml", env(map[string]string{"LEMONADE_LB_ADMIN_TOKEN": "s3cret with space"}))
			return err
		},
	} {
		err := load()
		if err == nil || !strings.Contains(err.Error(), "admin.token") || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A problem in a key the file sets names the file even when other keys come
// from the environment, and a missing backend list names no file at all
// when there is none.
func TestSourcesAreNamed(t *testing.T) {
	_, err := loadFile("", env(map[string]string{"LEMONADE_LB_STRATEGY": "random"}))
	if err == nil || !strings.Contains(err.Error(), "\n\tbackends: at least one backend") ||
		!strings.Contains(err.Error(), `LEMONADE_LB_STRATEGY="random": strategy:`) {
		t.Errorf("got %v", err)
	}
	_, err = loadFile("testdata/seed.yaml", env(map[string]string{"LEMONADE_LB_BACKEND_ADDRESSES": "127.0.0.1:1"}))
	if err != nil {
		t.Fatal(err) // the file's retries are resolved for the environment's one backend
	}
}

func TestLoadReadsTheProcessEnvironment(t *testing.T) {
	t.Setenv("LEMONADE_LB_BACKEND_ADDRESSES", "127.0.0.1:50510")
	t.Setenv("LEMONADE_LB_STRATEGY", "least_connections")
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Strategy != "least_connections" || len(c.Backends) != 1 {
		t.Errorf("got %+v", c)
	}
}

func TestFileErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		path   string
		target error
	}{
		{filepath.Join(dir, "missing.yaml"), fs.ErrNotExist},
		{write("lb.ini", "x=1"), configfile.ErrUnsupportedFormat},
		{write("broken.yaml", "backends: [\n"), nil},
		{write("broken.json", "{"), nil},
		{write("broken.toml", "[proxy\n"), nil},
	}
	for _, tc := range cases {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			_, err := loadFile(tc.path, env(nil))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.path) {
				t.Errorf("got %v, want ErrInvalid naming %s", err, tc.path)
			}
			if tc.target != nil && !errors.Is(err, tc.target) {
				t.Errorf("got %v, want errors.Is %v", err, tc.target)
			}
		})
	}
}

func TestParseBackendList(t *testing.T) {
	cases := []struct {
		in   string
		want []Backend
		err  string
	}{
		{in: "127.0.0.1:50510,127.0.0.1:50520", want: []Backend{
			{ID: 0, Address: "127.0.0.1:50510", Weight: 1}, {ID: 1, Address: "127.0.0.1:50520", Weight: 1}}},
		{in: "fast=127.0.0.1:50510*3,127.0.0.1:50520", want: []Backend{
			{ID: 0, Name: "fast", Address: "127.0.0.1:50510", Weight: 3}, {ID: 1, Address: "127.0.0.1:50520", Weight: 1}}},
		{in: " a = worker:1 * 2 , [::1]:80*7 ", want: []Backend{
			{ID: 0, Name: "a", Address: "worker:1", Weight: 2}, {ID: 1, Address: "[::1]:80", Weight: 7}}},
		{in: "x*0", want: []Backend{{ID: 0, Address: "x", Weight: 0}}}, // range and address are Validate's job
		{in: "a,,b", err: `backends[1] "": no address`},
		{in: "a,", err: `backends[1] "": no address`},
		{in: "=127.0.0.1:1", err: `backends[0] "=127.0.0.1:1": empty name`},
		{in: "n=", err: `backends[0] "n=": no address`},
		{in: "127.0.0.1:1*", err: `weight "" is not an integer`},
		{in: "127.0.0.1:1*x,127.0.0.1:2*y", err: `backends[0] "127.0.0.1:1*x": weight "x" is not an integer; backends[1]`},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseBackendList(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("got %v, want error containing %q", err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// docs/configuration.md is the one complete list: it must name every key
// and every environment variable.
func TestDocsNameEveryKeyAndVariable(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	var keys []string
	var walk func(reflect.Type, string)
	walk = func(t reflect.Type, prefix string) {
		for f := range t.Fields() {
			key := prefix + f.Tag.Get("mapstructure")
			switch ft := f.Type; {
			case ft.Kind() == reflect.Struct:
				walk(ft, key+".")
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				walk(ft.Elem(), key+"[].")
			default:
				keys = append(keys, key)
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	for _, ev := range envVars {
		keys = append(keys, ev.name)
	}
	for _, key := range keys {
		if !strings.Contains(doc, "`"+key+"`") {
			t.Errorf("docs/configuration.md does not mention `%s`", key)
		}
	}

	// The example in the load balancer section must load.
	_, section, _ := strings.Cut(doc, "## Load balancer")
	_, example, _ := strings.Cut(section, "### Example")
	_, example, _ = strings.Cut(example, "```yaml\n")
	example, _, _ = strings.Cut(example, "```")
	c, err := Parse([]byte(example), "yaml", "docs example")
	if err != nil || c.Strategy != "weighted_round_robin" || c.Admin.ListenAddress == "" {
		t.Errorf("docs example: %+v, %v", c, err)
	}
}

// The strategy names come from the strategy package's registry; the docs
// must describe every one, in the strategy row and in its own words.
func TestDocsNameEveryStrategy(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	var row string
	for line := range strings.Lines(string(data)) {
		if strings.HasPrefix(line, "| `strategy` |") {
			row = line
		}
	}
	if row == "" {
		t.Fatal("docs/configuration.md has no `strategy` row in its key table")
	}
	for _, name := range strategy.Names() {
		if !strings.Contains(row, "`"+name+"`") {
			t.Errorf("docs/configuration.md's `strategy` row does not mention `%s`", name)
		}
	}
	if !strings.Contains(row, "`"+strategy.Default()+"`") {
		t.Errorf("docs/configuration.md's `strategy` row does not give the default `%s`", strategy.Default())
	}
}

func TestValidateHandBuilt(t *testing.T) {
	c := Default()
	c.Backends = []Backend{{ID: 0, Address: "127.0.0.1:1", Weight: 1}, {ID: 1, Address: "127.0.0.1:2", Weight: 1}}
	if err := c.Validate(); err != nil {
		t.Errorf("unresolved but valid config: %v", err)
	}
	c.Backends[1].Weight = 0
	c.Strategy = "x"
	err := c.Validate()
	var verr *ValidationError
	if !errors.As(err, &verr) || !errors.Is(err, ErrInvalid) || len(verr.Problems) != 2 ||
		!strings.HasPrefix(verr.Problems[0], "strategy: ") || !strings.HasPrefix(verr.Problems[1], "backends[1].weight: ") {
		t.Errorf("got %v", err)
	}
}

func TestParseWithoutName(t *testing.T) {
	_, err := Parse([]byte("bogus: 1\nbackends: [{address: \"h:1\"}]\n"), "yaml", "")
	if err == nil || !strings.HasSuffix(err.Error(), `: bogus: unknown key`) || strings.Contains(err.Error(), ": : ") {
		t.Errorf("got %v", err)
	}
}

// A value that does not decode is reported once, not again by every rule
// that then sees the default or an empty value in its place.
func TestNoFollowOnProblems(t *testing.T) {
	for doc, want := range map[string]string{
		"backends: [1, 'x']\n":                   "backends[0]: expected a map",
		"backends: {address: 'h:1'}\n":           "backends: source data must be an array",
		"backends: [{address: 1}, {address: 2}]": "backends[0].address: expected type 'string'",
	} {
		_, err := Parse([]byte(doc), "yaml", "lb.yaml")
		var verr *ValidationError
		if !errors.As(err, &verr) || !strings.Contains(verr.Problems[0], want) {
			t.Fatalf("%q: got %v, want %q", doc, err, want)
		}
		for _, p := range verr.Problems {
			if strings.Contains(p, "HOST:PORT") || strings.Contains(p, "also the") || strings.Contains(p, "at least one") {
				t.Errorf("%q: follow-on problem %q", doc, p)
			}
		}
	}
}
