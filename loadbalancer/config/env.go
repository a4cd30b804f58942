package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lemonade-lb/lemonade/configfile"
)

// envVar is one environment variable and the key it overrides.
type envVar struct {
	name, key string
	set       func(c *Config, value string) error
}

// envVars lists every environment variable Load reads, in documentation order.
var envVars = []envVar{
	{"LEMONADE_LB_LISTEN_ADDRESS", "proxy.listen_address", setString(func(c *Config) *string { return &c.Proxy.ListenAddress })},
	{"LEMONADE_LB_STRATEGY", "strategy", setString(func(c *Config) *string { return &c.Strategy })},
	{"LEMONADE_LB_BACKEND_ADDRESSES", "backends", func(c *Config, value string) error {
		backends, err := parseBackendList(value)
		if err == nil {
			c.Backends = backends
		}
		return err
	}},
	{"LEMONADE_LB_MAX_CONNECTIONS", "proxy.max_connections", setInt(func(c *Config) *int { return &c.Proxy.MaxConnections })},
	{"LEMONADE_LB_HEALTH_INTERVAL_MS", "health.interval", setDuration(func(c *Config) *time.Duration { return &c.Health.Interval })},
	{"LEMONADE_LB_HEALTH_TIMEOUT_MS", "health.timeout", setDuration(func(c *Config) *time.Duration { return &c.Health.Timeout })},
	{"LEMONADE_LB_PASSIVE_MAX_FAILS", "health.passive.max_fails", setInt(func(c *Config) *int { return &c.Health.Passive.MaxFails })},
	{"LEMONADE_LB_PASSIVE_FAIL_DURATION_MS", "health.passive.fail_duration", setDuration(func(c *Config) *time.Duration { return &c.Health.Passive.FailDuration })},
	{"LEMONADE_LB_DRAIN_TIMEOUT_MS", "runtime.drain_timeout_millis", setDuration(func(c *Config) *time.Duration { return &c.Runtime.DrainTimeout })},
	{"LEMONADE_LB_CONFIG_WATCH_INTERVAL_MS", "runtime.config_watch_interval_millis", setDuration(func(c *Config) *time.Duration { return &c.Runtime.ConfigWatchInterval })},
	{"LEMONADE_LB_ADMIN_ADDRESS", "admin.listen_address", setString(func(c *Config) *string { return &c.Admin.ListenAddress })},
	{"LEMONADE_LB_ADMIN_TOKEN", "admin.token", setString(func(c *Config) *string { return &c.Admin.Token })},
	{"LEMONADE_LB_ACCESS_LOG", "access_log.path", setString(func(c *Config) *string { return &c.AccessLog.Path })},
	{"LEMONADE_LB_ACCESS_LOG_FORMAT", "access_log.format", setString(func(c *Config) *string { return &c.AccessLog.Format })},
	{"LEMONADE_LB_DISCOVERY_ETCD_ENDPOINTS", "discovery.etcd.endpoints", func(c *Config, value string) error {
		c.Discovery.Etcd.Endpoints = nil
		for _, ep := range strings.Split(value, ",") {
			if ep = strings.TrimSpace(ep); ep != "" {
				c.Discovery.Etcd.Endpoints = append(c.Discovery.Etcd.Endpoints, ep)
			}
		}
		return nil
	}},
	{"LEMONADE_LB_DISCOVERY_ETCD_PREFIX", "discovery.etcd.prefix", setString(func(c *Config) *string { return &c.Discovery.Etcd.Prefix })},
	{"LEMONADE_LB_DISCOVERY_ETCD_USERNAME", "discovery.etcd.username", setString(func(c *Config) *string { return &c.Discovery.Etcd.Username })},
	{"LEMONADE_LB_DISCOVERY_ETCD_PASSWORD", "discovery.etcd.password", setString(func(c *Config) *string { return &c.Discovery.Etcd.Password })},
	// Without LB_: the workers read them too.
	{"LEMONADE_OTLP_ENDPOINT", "otlp_endpoint", setString(func(c *Config) *string { return &c.OTLPEndpoint })},
	{"LEMONADE_OTLP_PROTOCOL", "otlp_protocol", setString(func(c *Config) *string { return &c.OTLPProtocol })},
}

// secretKeys are keys whose value is never repeated in an error message.
var secretKeys = map[string]bool{"admin.token": true, "discovery.etcd.password": true}

// applyEnv sets c's keys from the environment variables that are set and not
// empty. It returns, for each key it set, the source to name in any later
// problem with it (NAME="value"), and a problem for each value it could not
// parse.
func applyEnv(c *Config, lookup func(string) (string, bool)) (fromEnv map[string]string, ps []problem) {
	fromEnv = map[string]string{}
	for _, ev := range envVars {
		value, _ := lookup(ev.name)
		value = strings.TrimSpace(value)
		if value == "" {
			continue
		}
		src := fmt.Sprintf("%s=%q", ev.name, value)
		if secretKeys[ev.key] {
			src = ev.name
		}
		if err := ev.set(c, value); err != nil {
			ps = append(ps, problem{src, ev.key, err.Error()})
			continue
		}
		fromEnv[ev.key] = src
	}
	return fromEnv, ps
}

func setString(field func(*Config) *string) func(*Config, string) error {
	return func(c *Config, value string) error {
		*field(c) = value
		return nil
	}
}

func setInt(field func(*Config) *int) func(*Config, string) error {
	return func(c *Config, value string) error {
		n, err := strconv.Atoi(value)
		if err != nil {
			return fmt.Errorf("want an integer")
		}
		*field(c) = n
		return nil
	}
}

func setDuration(field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, value string) error {
		d, err := configfile.ParseDuration(value)
		if err != nil {
			return err
		}
		*field(c) = d
		return nil
	}
}

// parseBackendList parses LEMONADE_LB_BACKEND_ADDRESSES: comma-separated
// entries of the form [NAME=]HOST:PORT[*WEIGHT]. The ID of each backend is
// its position. Only the syntax is checked here; addresses and weights are
// validated with the rest of the config.
func parseBackendList(s string) ([]Backend, error) {
	var backends []Backend
	var bad []string
	for i, entry := range strings.Split(s, ",") {
		b := defaultBackend(i)
		rest := strings.TrimSpace(entry)
		if name, addr, ok := strings.Cut(rest, "="); ok {
			b.Name, rest = strings.TrimSpace(name), strings.TrimSpace(addr)
			if b.Name == "" {
				bad = append(bad, fmt.Sprintf("backends[%d] %q: empty name before \"=\"", i, entry))
			}
		}
		if at := strings.LastIndex(rest, "*"); at >= 0 {
			weight := strings.TrimSpace(rest[at+1:])
			n, err := strconv.Atoi(weight)
			if err != nil {
				bad = append(bad, fmt.Sprintf("backends[%d] %q: weight %q is not an integer", i, entry, weight))
			}
			b.Weight, rest = n, strings.TrimSpace(rest[:at])
		}
		if rest == "" {
			bad = append(bad, fmt.Sprintf("backends[%d] %q: no address (want [NAME=]HOST:PORT[*WEIGHT])", i, entry))
		}
		b.Address = rest
		backends = append(backends, b)
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(bad, "; "))
	}
	return backends, nil
}
