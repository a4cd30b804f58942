package service

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/viper"

	"github.com/lemonade-lb/lemonade/configfile"
	"github.com/lemonade-lb/lemonade/observability/otel/endpoint"
)

// Defaults, used for any setting no source gives.
const (
	DefaultListenAddress = "127.0.0.1:50200"
	DefaultServiceName   = "lemonade-worker"
	DefaultWorkDelay     = 20 * time.Millisecond
)

// Environment variables Load reads.
const (
	EnvListenAddress = "LEMONADE_WORKER_LISTEN_ADDRESS"
	EnvServiceName   = "LEMONADE_WORKER_SERVICE_NAME"
	EnvWorkDelay     = "LEMONADE_WORKER_WORK_DELAY_MS"
	// EnvOTLPEndpoint and EnvOTLPProtocol are the worker's own; they win
	// over EnvAnyOTLPEndpoint and EnvAnyOTLPProtocol, which the balancer
	// reads too, so one variable can point every binary at a collector.
	EnvOTLPEndpoint    = "LEMONADE_WORKER_OTLP_ENDPOINT"
	EnvOTLPProtocol    = "LEMONADE_WORKER_OTLP_PROTOCOL"
	EnvAnyOTLPEndpoint = "LEMONADE_OTLP_ENDPOINT"
	EnvAnyOTLPProtocol = "LEMONADE_OTLP_PROTOCOL"
)

// Flag names, as the CLI spells them; errors name the flag a value came from.
const (
	FlagConfig  = "--config"
	FlagAddress = "--address"
	FlagName    = "--name"
	FlagDelay   = "--delay"
)

// Config is what a worker needs to run.
type Config struct {
	// ListenAddress is host:port to listen on; port 0 picks a free port.
	ListenAddress string
	// ServiceName is reported in every response; never empty.
	ServiceName string
	// WorkDelay is how long GET /work waits by default; 0 answers at once.
	WorkDelay time.Duration
	// OTLPEndpoint, if not empty, is the OpenTelemetry collector the worker
	// exports its spans and request metrics to (see endpoint.Parse for the
	// forms). The service only checks it: the caller sets the export up
	// (observability/otel) and hands it over as Observer.
	OTLPEndpoint string
	// OTLPProtocol is endpoint.GRPC or endpoint.HTTPProtobuf; empty means
	// endpoint.GRPC.
	OTLPProtocol string
	// Observer, if not nil, is told of every request the service answers.
	// No file or variable sets it; nil costs nothing.
	Observer RequestObserver
}

// RequestObserver is told of every request a Service answers (see
// Service.EndRequest); observability/otel.HTTP, which exports a span and
// the request metrics over OTLP, is one.
type RequestObserver interface {
	// ObserveRequest gets the method, canonical (GET, HEAD, POST, …, or
	// "_OTHER" for a method HTTP does not define), the route (one of Routes,
	// or metrics.OtherRoute), the status sent, and when the request started
	// and ended. It is called on the request's goroutine, after the answer
	// was written: it must be quick and must not block.
	ObserveRequest(method, route string, status int, start, end time.Time)
}

// DefaultConfig returns the configuration used when nothing is given.
func DefaultConfig() Config {
	return Config{ListenAddress: DefaultListenAddress, ServiceName: DefaultServiceName, WorkDelay: DefaultWorkDelay}
}

// Flags holds the command-line values, as typed; empty means not given.
type Flags struct {
	Config  string // path of a .json, .toml, .yaml or .yml file
	Address string // host:port to listen on
	Name    string // the service name in answers, metrics and traces
	Delay   string // integer milliseconds or a duration string ("20ms")
}

// fileConfig is the shape of a worker config file. work_delay and
// work_delay_ms are synonyms (example files use both); giving both is an
// error.
type fileConfig struct {
	ListenAddress  string        `mapstructure:"listen_address"`
	ServiceName    string        `mapstructure:"service_name"`
	WorkDelay      time.Duration `mapstructure:"work_delay_ms"`
	WorkDelayAlias time.Duration `mapstructure:"work_delay"`
	OTLPEndpoint   string        `mapstructure:"otlp_endpoint"`
	OTLPProtocol   string        `mapstructure:"otlp_protocol"`
}

// Load resolves a worker's configuration from, highest precedence first, the
// flags, the environment, the config file named by f.Config, and the
// defaults. Every value given is checked where it is read, even one a
// higher-precedence source overrides, since a bad value anywhere is a
// mistake to fix; an error names the setting, the value and where it came
// from (file and key, environment variable, or flag).
func Load(f Flags) (Config, error) {
	cfg := DefaultConfig()
	endpointFrom := "" // where cfg.OTLPEndpoint came from, for the last check
	if f.Config != "" {
		if err := loadFile(f.Config, &cfg, &endpointFrom); err != nil {
			return Config{}, err
		}
	}
	if err := loadEnv(&cfg, &endpointFrom); err != nil {
		return Config{}, err
	}
	if err := apply(&cfg, f.Address, f.Name, f.Delay, flagOrigins); err != nil {
		return Config{}, err
	}
	// The endpoint and the protocol may come from different places; only
	// together do they say whether a URL path is allowed.
	if cfg.OTLPEndpoint != "" {
		if _, err := endpoint.Parse(cfg.OTLPEndpoint, cfg.OTLPProtocol); err != nil {
			return Config{}, fmt.Errorf("invalid OTLP endpoint %q from %s: %w", cfg.OTLPEndpoint, endpointFrom, err)
		}
	}
	return cfg, nil
}

// applyOTLP checks and sets the OTLP settings given; empty ones are left
// alone. The endpoint is checked as for protocol checkAs if that is not
// empty, else with the protocol in effect once protocol is applied; Load
// checks the final pair again, since the two may come from different places.
func applyOTLP(cfg *Config, ep, protocol, checkAs, epFrom, protocolFrom string, endpointFrom *string) error {
	if protocol != "" {
		if err := endpoint.CheckProtocol(protocol); err != nil {
			return fmt.Errorf("invalid OTLP protocol from %s: %w", protocolFrom, err)
		}
		cfg.OTLPProtocol = protocol
	}
	if checkAs == "" {
		checkAs = cfg.OTLPProtocol
	}
	if ep != "" {
		if _, err := endpoint.Parse(ep, checkAs); err != nil {
			return fmt.Errorf("invalid OTLP endpoint %q from %s: %w", ep, epFrom, err)
		}
		cfg.OTLPEndpoint, *endpointFrom = ep, epFrom
	}
	return nil
}

// origins says where each of the three settings came from, for errors.
type origins struct{ address, name, delay string }

var flagOrigins = origins{"flag " + FlagAddress, "flag " + FlagName, "flag " + FlagDelay}

var envOrigins = origins{
	"environment variable " + EnvListenAddress,
	"environment variable " + EnvServiceName,
	"environment variable " + EnvWorkDelay,
}

// apply checks and sets the settings given as strings; empty ones are left
// alone.
func apply(cfg *Config, addr, name, delay string, from origins) error {
	if addr != "" {
		if err := checkAddress(addr); err != nil {
			return fmt.Errorf("invalid listen address %q from %s: %w", addr, from.address, err)
		}
		cfg.ListenAddress = addr
	}
	if name != "" {
		if err := checkName(name); err != nil {
			return fmt.Errorf("invalid service name %q from %s: %w", name, from.name, err)
		}
		cfg.ServiceName = name
	}
	if delay != "" {
		d, err := configfile.ParseDuration(delay)
		if err == nil {
			err = checkDelay(d)
		}
		if err != nil {
			return fmt.Errorf("invalid work delay %q from %s: %w", delay, from.delay, err)
		}
		cfg.WorkDelay = d
	}
	return nil
}

func loadFile(path string, cfg *Config, endpointFrom *string) error {
	v := viper.New()
	if err := configfile.Read(v, path); err != nil {
		return fmt.Errorf("flag %s: %w", FlagConfig, err)
	}
	return decodeFile(v, path, cfg, endpointFrom)
}

// decodeFile applies the settings read into v from the file called path.
func decodeFile(v *viper.Viper, path string, cfg *Config, endpointFrom *string) error {
	from := func(key string) string { return fmt.Sprintf("config file %s (key %s)", path, key) }

	var fc fileConfig
	if err := configfile.Decode(v, &fc); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	delayKey := ""
	for _, key := range []string{"work_delay_ms", "work_delay"} {
		if !v.IsSet(key) {
			continue
		}
		if delayKey != "" {
			return fmt.Errorf("config file %s: both %s and %s are set; they are the same setting, keep one", path, delayKey, key)
		}
		delayKey = key
	}
	if v.IsSet("listen_address") {
		if err := checkAddress(fc.ListenAddress); err != nil {
			return fmt.Errorf("invalid listen address %q from %s: %w", fc.ListenAddress, from("listen_address"), err)
		}
		cfg.ListenAddress = fc.ListenAddress
	}
	if v.IsSet("service_name") {
		if err := checkName(fc.ServiceName); err != nil {
			return fmt.Errorf("invalid service name %q from %s: %w", fc.ServiceName, from("service_name"), err)
		}
		cfg.ServiceName = fc.ServiceName
	}
	if delayKey != "" {
		d := fc.WorkDelay
		if delayKey == "work_delay" {
			d = fc.WorkDelayAlias
		}
		if err := checkDelay(d); err != nil {
			return fmt.Errorf("invalid work delay %v from %s: %w", d, from(delayKey), err)
		}
		cfg.WorkDelay = d
	}
	if v.IsSet("otlp_protocol") && fc.OTLPProtocol == "" {
		return fmt.Errorf("invalid OTLP protocol from %s: empty; leave the key out for the default, %s", from("otlp_protocol"), endpoint.GRPC)
	}
	// A file is checked on its own: its endpoint must suit its protocol.
	return applyOTLP(cfg, fc.OTLPEndpoint, fc.OTLPProtocol, "", from("otlp_endpoint"), from("otlp_protocol"), endpointFrom)
}

func loadEnv(cfg *Config, endpointFrom *string) error {
	// viper treats an empty variable as unset, which is what a shell user
	// expects of VAR= .
	v := viper.New()
	keys := [][2]string{
		{"listen_address", EnvListenAddress},
		{"service_name", EnvServiceName},
		{"work_delay", EnvWorkDelay},
		{"otlp_endpoint", EnvOTLPEndpoint},
		{"otlp_protocol", EnvOTLPProtocol},
		{"any_otlp_endpoint", EnvAnyOTLPEndpoint},
		{"any_otlp_protocol", EnvAnyOTLPProtocol},
	}
	for _, k := range keys {
		if err := v.BindEnv(k[0], k[1]); err != nil {
			return fmt.Errorf("bind %s: %w", k[1], err)
		}
	}
	if err := apply(cfg, v.GetString("listen_address"), v.GetString("service_name"), v.GetString("work_delay"), envOrigins); err != nil {
		return err
	}
	env := func(key string) string { return strings.TrimSpace(v.GetString(key)) }
	// The variables every binary reads first, then the worker's own.
	// A variable's endpoint is checked as http/protobuf (which allows the
	// most): a path may suit the protocol another variable gives.
	if err := applyOTLP(cfg, env("any_otlp_endpoint"), env("any_otlp_protocol"), endpoint.HTTPProtobuf,
		"environment variable "+EnvAnyOTLPEndpoint, "environment variable "+EnvAnyOTLPProtocol, endpointFrom); err != nil {
		return err
	}
	return applyOTLP(cfg, env("otlp_endpoint"), env("otlp_protocol"), endpoint.HTTPProtobuf,
		"environment variable "+EnvOTLPEndpoint, "environment variable "+EnvOTLPProtocol, endpointFrom)
}

// Validate checks a Config built in code the way Load checks a loaded one.
func (c Config) Validate() error {
	if err := checkAddress(c.ListenAddress); err != nil {
		return fmt.Errorf("invalid listen address %q: %w", c.ListenAddress, err)
	}
	return c.validateForServe()
}

// validateForServe checks what serving on an already open listener needs.
func (c Config) validateForServe() error {
	if err := checkName(c.ServiceName); err != nil {
		return fmt.Errorf("invalid service name %q: %w", c.ServiceName, err)
	}
	if err := checkDelay(c.WorkDelay); err != nil {
		return fmt.Errorf("invalid work delay %s: %w", c.WorkDelay, err)
	}
	if c.OTLPProtocol != "" {
		if err := endpoint.CheckProtocol(c.OTLPProtocol); err != nil {
			return fmt.Errorf("invalid OTLP protocol: %w", err)
		}
	}
	if c.OTLPEndpoint != "" {
		if _, err := endpoint.Parse(c.OTLPEndpoint, c.OTLPProtocol); err != nil {
			return fmt.Errorf("invalid OTLP endpoint %q: %w", c.OTLPEndpoint, err)
		}
	}
	return nil
}

func checkAddress(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		// net's message repeats the address; keep only the reason.
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return errors.New(ae.Err)
		}
		return err
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || port != strconv.FormatUint(n, 10) {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

func checkName(name string) error {
	if strings.TrimSpace(name) == "" {
		return errors.New("must not be empty")
	}
	return nil
}

func checkDelay(d time.Duration) error {
	if d < 0 {
		return errors.New("must not be negative")
	}
	return nil
}
