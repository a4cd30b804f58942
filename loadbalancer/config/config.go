// Package config is the load balancer's configuration: the file format (the
// seed's load-balancer.yaml loads unchanged), environment overrides, defaults
// and validation. A Config that Load returns is whole and valid; nothing else
// in the balancer re-checks it.
//
// Precedence is environment > file > defaults. Every key, default and
// environment variable is listed in docs/configuration.md.
package config

import (
	"fmt"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/strategy"
)

// Health check kinds.
const (
	HealthTCP  = "tcp"
	HealthHTTP = "http"
)

// HealthKinds lists every valid health check kind.
var HealthKinds = []string{HealthTCP, HealthHTTP}

// OTLP export protocols, named as in OTEL_EXPORTER_OTLP_PROTOCOL.
const (
	OTLPGRPC         = "grpc"
	OTLPHTTPProtobuf = "http/protobuf"
)

// OTLPProtocols lists every valid otlp_protocol value.
var OTLPProtocols = []string{OTLPGRPC, OTLPHTTPProtobuf}

// Backend weight bounds.
const (
	MinWeight = 1
	MaxWeight = 255
)

// Config is the whole load balancer configuration. Default returns the
// defaults; Load and Parse return a resolved, validated Config.
type Config struct {
	Runtime  Runtime   `mapstructure:"runtime"`
	Proxy    Proxy     `mapstructure:"proxy"`
	Strategy string    `mapstructure:"strategy"` // one of strategy.Names(); default strategy.Default()
	Backends []Backend `mapstructure:"backends"` // at least one, unless discovery can add them
	Health   Health    `mapstructure:"health"`
	Metrics  Metrics   `mapstructure:"metrics"`
	Admin    Admin     `mapstructure:"admin"`
	// AccessLog is the connection log; a reload applies it.
	AccessLog AccessLog `mapstructure:"access_log"`
	// Adaptive is the adaptive strategy's settings, checked whichever
	// strategy is in use so a later switch to adaptive cannot fail.
	Adaptive strategy.AdaptiveWeights `mapstructure:"adaptive"`

	// OTLPEndpoint and OTLPProtocol configure OpenTelemetry export of the
	// metrics (observability/otel); an empty endpoint disables it.
	// OTLPEndpoint is HOST:PORT, http://HOST:PORT[/PATH] or
	// https://HOST[:PORT][/PATH] (endpoint.Parse); OTLPProtocol is one of
	// OTLPProtocols (default grpc). Both are read at start.
	OTLPEndpoint string `mapstructure:"otlp_endpoint"`
	OTLPProtocol string `mapstructure:"otlp_protocol"`

	// Discovery is where backends beyond the file's come from, and shared
	// settings over the file's. It is read at start: a reload that changes
	// it is rejected.
	Discovery Discovery `mapstructure:"discovery"`
}

// Discovery configures the fleet's sources of backends and settings.
type Discovery struct {
	Etcd Etcd `mapstructure:"etcd"`
}

// Etcd is the etcd fleet source (the fleet module, wired in by the CLI):
// the balancer watches Prefix for the backends registered in its pool and
// for the shared settings. No endpoints: off.
type Etcd struct {
	Endpoints []string `mapstructure:"endpoints"` // host:port of each etcd member; default none (off)
	// Prefix is the root of the fleet's keys, "/" and a path with no
	// trailing "/". Default DefaultEtcdPrefix.
	Prefix      string        `mapstructure:"prefix"`
	Username    string        `mapstructure:"username"`     // etcd authentication; with Password, or neither
	Password    string        `mapstructure:"password"`     // never repeated in errors or the admin API
	DialTimeout time.Duration `mapstructure:"dial_timeout"` // how long the start waits for etcd; default 5s
	TLS         EtcdTLS       `mapstructure:"tls"`
}

// Enabled reports whether the etcd source is configured.
func (e Etcd) Enabled() bool { return len(e.Endpoints) > 0 }

// EtcdTLS makes the etcd client use TLS: CAFile alone verifies the server;
// CertFile and KeyFile (both or neither) authenticate the balancer.
type EtcdTLS struct {
	CAFile   string `mapstructure:"ca_file"`
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
}

// Enabled reports whether any TLS file is set.
func (t EtcdTLS) Enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// DefaultEtcdPrefix is the root of the fleet's keys when none is given.
const DefaultEtcdPrefix = "/lemonade"

// Runtime holds process-wide timings. MetricsCap, HealthCap,
// BackgroundTimeout and AcceptTimeout tuned channels and tasks of the Rust
// original; they are accepted and ignored in Go (docs/configuration.md says
// why).
type Runtime struct {
	MetricsCap int `mapstructure:"metrics_cap"` // unused; default 1000
	HealthCap  int `mapstructure:"health_cap"`  // unused; default 100
	// DrainTimeout is how long shutdown, and a reload that removes a backend,
	// wait for open connections to finish before closing them. Default 5s.
	DrainTimeout      time.Duration `mapstructure:"drain_timeout_millis"`
	BackgroundTimeout time.Duration `mapstructure:"background_timeout_millis"` // unused; default 30s
	// AcceptTimeout is accepted and ignored: at Proxy.MaxConnections the
	// balancer stops accepting and new clients wait in the kernel's listen
	// backlog, so there is no accept wait to bound. Default 60s.
	AcceptTimeout time.Duration `mapstructure:"accept_timeout_millis"`
	// ConfigWatchInterval is how often the config file is checked for changes
	// (hot reload). Default 1s.
	ConfigWatchInterval time.Duration `mapstructure:"config_watch_interval_millis"`
}

// Proxy configures the listener and the per-connection behaviour.
type Proxy struct {
	ListenAddress string `mapstructure:"listen_address"` // host:port; default 127.0.0.1:50501
	// MaxConnections caps concurrent client connections; 0 means unlimited.
	// Default 10000.
	MaxConnections int `mapstructure:"max_connections"`
	// ConnectTimeout bounds one dial to a backend. Default 2s.
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"`
	// Retries is how many other backends are tried after a failed dial,
	// between 0 and len(Backends)-1. Load resolves an absent value to
	// min(3, len(Backends)-1); with discovery, a larger value to
	// len(Backends)-1, as the pool's size changes at run time.
	Retries *int `mapstructure:"retries"`
	// IdleTimeout closes a connection with no bytes in either direction for
	// this long; 0 disables it.
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
	// EventLoops is how many event loops (threads) move the bytes on Linux;
	// 0 picks one per two CPUs. Read at start.
	EventLoops int `mapstructure:"event_loops"`
	// ReusePort lets a second balancer listen on the same address, for an
	// upgrade with no refused connection: it shares the listening socket of
	// the balancer already there (handed over a Unix socket), or binds its
	// own with SO_REUSEPORT. Used when the listener is bound. Default false.
	ReusePort bool `mapstructure:"reuse_port"`
}

// Backend is one upstream server. ID is the identity across reloads.
type Backend struct {
	ID      int    `mapstructure:"id"`      // unique; default its position in the list
	Name    string `mapstructure:"name"`    // unique; default "backend-<ID>"
	Address string `mapstructure:"address"` // host:port, unique
	Weight  int    `mapstructure:"weight"`  // MinWeight..MaxWeight; default 1
}

// Health configures the active checks and the passive failure detection.
type Health struct {
	Kind     string        `mapstructure:"kind"`     // one of HealthKinds; default tcp
	Path     string        `mapstructure:"path"`     // GET path for http checks; default /health
	Interval time.Duration `mapstructure:"interval"` // between checks of one backend; default 5s
	Timeout  time.Duration `mapstructure:"timeout"`  // for one check; default 2s
	Rise     int           `mapstructure:"rise"`     // consecutive successes to mark a backend up; default 2
	Fall     int           `mapstructure:"fall"`     // consecutive failures to mark a backend down; default 3
	Passive  Passive       `mapstructure:"passive"`
}

// Passive is when failed dials take a backend down between active checks
// (backend.Passive): MaxFails failures within FailDuration. A failed dial
// always retries another backend at once, whatever the policy.
type Passive struct {
	// MaxFails is 0..backend.MaxPassiveFails; 0 never marks a backend down.
	// Default 3.
	MaxFails int `mapstructure:"max_fails"`
	// FailDuration is the window the failures must fall within; positive
	// when MaxFails is not 0. Default 10s.
	FailDuration time.Duration `mapstructure:"fail_duration"`
}

// Metrics is the seed's metrics section. It times the OTLP metric export
// (otlp_endpoint); /metrics needs neither key, since it reads the live
// figures at each scrape. Both are read at start.
type Metrics struct {
	Interval time.Duration `mapstructure:"interval"` // between two OTLP exports; default 10s
	Timeout  time.Duration `mapstructure:"timeout"`  // bound on one OTLP export; default 2s
}

// Admin configures the admin/metrics HTTP listener; empty address disables it.
// Both keys are read at start: a reload does not change them.
type Admin struct {
	ListenAddress string `mapstructure:"listen_address"` // host:port; default "" (off)
	// Token, when set, is required as "Authorization: Bearer TOKEN" on every
	// admin request but GET /health. Without it the admin listener must be on
	// a loopback address. Default "" (none).
	Token string `mapstructure:"token"`
}

// AccessLog configures the TCP access log (loadbalancer/accesslog): one
// line per connection when it ends.
type AccessLog struct {
	// Path is the file lines are appended to (created if missing, opened
	// again on SIGUSR1), "-" for the standard output, or "" for no log.
	// Default "".
	Path string `mapstructure:"path"`
	// Format is one of accesslog.Formats. Default text.
	Format string `mapstructure:"format"`
}

// Default returns the defaults: every key set except Backends (there is no
// default backend) and Proxy.Retries (resolved from the number of backends).
func Default() *Config {
	return &Config{
		Runtime: Runtime{
			MetricsCap:          1000,
			HealthCap:           100,
			DrainTimeout:        5 * time.Second,
			BackgroundTimeout:   30 * time.Second,
			AcceptTimeout:       60 * time.Second,
			ConfigWatchInterval: time.Second,
		},
		Proxy: Proxy{
			ListenAddress:  "127.0.0.1:50501",
			MaxConnections: 10000,
			ConnectTimeout: 2 * time.Second,
		},
		Strategy: strategy.Default(),
		Health: Health{
			Kind:     HealthTCP,
			Path:     "/health",
			Interval: 5 * time.Second,
			Timeout:  2 * time.Second,
			Rise:     2,
			Fall:     3,
			Passive:  Passive{MaxFails: 3, FailDuration: 10 * time.Second},
		},
		Metrics:      Metrics{Interval: 10 * time.Second, Timeout: 2 * time.Second},
		AccessLog:    AccessLog{Format: "text"},
		Adaptive:     strategy.DefaultAdaptiveWeights(),
		OTLPProtocol: OTLPGRPC,
		Discovery:    Discovery{Etcd: Etcd{Prefix: DefaultEtcdPrefix, DialTimeout: 5 * time.Second}},
	}
}

// defaultBackend is a backend at position i before the file or environment
// fills it in.
func defaultBackend(i int) Backend {
	return Backend{ID: i, Weight: 1}
}

// resolve fills the defaults that depend on other values: backend names and
// the retry count.
func (c *Config) resolve() {
	for i := range c.Backends {
		if c.Backends[i].Name == "" {
			c.Backends[i].Name = fmt.Sprintf("backend-%d", c.Backends[i].ID)
		}
	}
	if len(c.Discovery.Etcd.Endpoints) == 0 {
		c.Discovery.Etcd.Endpoints = nil // "endpoints: []" is none, the same as no key
	}
	if c.Proxy.Retries == nil {
		r := max(0, min(3, len(c.Backends)-1))
		c.Proxy.Retries = &r
	} else if c.Discovery.Etcd.Enabled() && *c.Proxy.Retries > len(c.Backends)-1 && *c.Proxy.Retries > 0 {
		// The pool grows and shrinks at run time: retries beyond the other
		// backends there are now mean no more than those.
		r := max(0, len(c.Backends)-1)
		c.Proxy.Retries = &r
	}
}
