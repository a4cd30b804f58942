// Package config is the load balancer's configuration: the file format (the
// seed's load-balancer.yaml loads unchanged), environment overrides, defaults
// and validation. A Config that Load returns is whole and valid; nothing else
// in the balancer re-checks it.
package config

import "time"

// Strategy names, as in the seed README.
const (
	RoundRobin          = "round_robin"
	LeastConnections    = "least_connections"
	WeightedRoundRobin  = "weighted_round_robin"
	FastestResponseTime = "fastest_response_time"
	Adaptive            = "adaptive"
)

// Strategies lists every valid strategy name, in documentation order.
var Strategies = []string{RoundRobin, LeastConnections, WeightedRoundRobin, FastestResponseTime, Adaptive}

// Health check kinds.
const (
	HealthTCP  = "tcp"
	HealthHTTP = "http"
)

// Config is the whole load balancer configuration.
type Config struct {
	Runtime  Runtime   `mapstructure:"runtime"`
	Proxy    Proxy     `mapstructure:"proxy"`
	Strategy string    `mapstructure:"strategy"`
	Backends []Backend `mapstructure:"backends"`
	Health   Health    `mapstructure:"health"`
	Metrics  Metrics   `mapstructure:"metrics"`
	Adaptive Weights   `mapstructure:"adaptive"`
	Admin    Admin     `mapstructure:"admin"`

	// OTLPEndpoint and OTLPProtocol configure OpenTelemetry export; empty disables it.
	OTLPEndpoint string `mapstructure:"otlp_endpoint"`
	OTLPProtocol string `mapstructure:"otlp_protocol"`
}

// Runtime holds process-wide timings. MetricsCap, HealthCap and
// BackgroundTimeout sized channels in the Rust original; they are accepted and
// ignored in Go (documented in docs/configuration.md).
type Runtime struct {
	MetricsCap          int           `mapstructure:"metrics_cap"`
	HealthCap           int           `mapstructure:"health_cap"`
	DrainTimeout        time.Duration `mapstructure:"drain_timeout_millis"`
	BackgroundTimeout   time.Duration `mapstructure:"background_timeout_millis"`
	AcceptTimeout       time.Duration `mapstructure:"accept_timeout_millis"`
	ConfigWatchInterval time.Duration `mapstructure:"config_watch_interval_millis"`
}

// Proxy configures the listener and the per-connection behaviour.
type Proxy struct {
	ListenAddress  string        `mapstructure:"listen_address"`
	MaxConnections int           `mapstructure:"max_connections"`
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"`
	// Retries is how many other backends are tried after a failed dial.
	// Load resolves an absent value to min(3, len(Backends)-1).
	Retries *int `mapstructure:"retries"`
	// IdleTimeout closes a connection with no bytes in either direction for
	// this long; 0 disables it.
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
}

// Backend is one upstream server. ID is the identity across reloads.
type Backend struct {
	ID      int    `mapstructure:"id"`
	Name    string `mapstructure:"name"`
	Address string `mapstructure:"address"`
	Weight  int    `mapstructure:"weight"`
}

// Health configures the active checks.
type Health struct {
	Kind     string        `mapstructure:"kind"`
	Path     string        `mapstructure:"path"`
	Interval time.Duration `mapstructure:"interval"`
	Timeout  time.Duration `mapstructure:"timeout"`
	Rise     int           `mapstructure:"rise"`
	Fall     int           `mapstructure:"fall"`
}

// Metrics is the seed's metrics section (collection interval and timeout).
type Metrics struct {
	Interval time.Duration `mapstructure:"interval"`
	Timeout  time.Duration `mapstructure:"timeout"`
}

// Weights are the adaptive strategy's factor weights.
type Weights struct {
	ConnectionWeight float64 `mapstructure:"connection_weight"`
	LatencyWeight    float64 `mapstructure:"latency_weight"`
	ErrorWeight      float64 `mapstructure:"error_weight"`
}

// Admin configures the admin/metrics HTTP listener; empty address disables it.
type Admin struct {
	ListenAddress string `mapstructure:"listen_address"`
}
