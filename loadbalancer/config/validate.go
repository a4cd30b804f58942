package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/accesslog"
	"github.com/lemonade-lb/lemonade/loadbalancer/backend"
	"github.com/lemonade-lb/lemonade/loadbalancer/strategy"
	"github.com/lemonade-lb/lemonade/observability/otel/endpoint"
)

// ErrInvalid is wrapped by every error Load, Parse and Validate return, so
// the CLI can tell a bad configuration (exit code 2) from other failures
// with errors.Is.
var ErrInvalid = errors.New("invalid load balancer configuration")

// ValidationError lists every problem found in one configuration. Each
// problem reads "SOURCE: KEY: what is wrong", where SOURCE is the file or
// the environment variable (NAME="value") the key came from; Validate, which
// does not know sources, leaves it out. Error lists the first maxListed.
type ValidationError struct {
	Problems []string
}

// maxListed is how many problems an error message lists: a file of garbage
// can make hundreds of thousands, and the first screenful says what is wrong.
const maxListed = 100

// maxEventLoops bounds proxy.event_loops: more loops than CPUs only add
// context switches.
const maxEventLoops = 256

// Error reads as ErrInvalid followed by the problems, one a line (only the
// first maxListed of them, and how many more there are).
func (e *ValidationError) Error() string {
	if len(e.Problems) == 1 {
		return ErrInvalid.Error() + ": " + e.Problems[0]
	}
	listed, more := e.Problems, ""
	if len(listed) > maxListed {
		listed, more = listed[:maxListed], fmt.Sprintf("\n\t... and %d more", len(listed)-maxListed)
	}
	return fmt.Sprintf("%v: %d problems:\n\t%s%s", ErrInvalid, len(e.Problems), strings.Join(listed, "\n\t"), more)
}

// Unwrap makes errors.Is(err, ErrInvalid) hold.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

// Validate checks every rule and reports every broken one, in a
// *ValidationError. It does not fill in defaults, and it accepts the two
// that Load resolves from other values still unset: Proxy.Retries nil and
// empty backend names.
func (c *Config) Validate() error {
	if ps := c.problems(); len(ps) > 0 {
		return newValidationError(ps)
	}
	return nil
}

func newValidationError(ps []problem) *ValidationError {
	e := &ValidationError{}
	for _, p := range ps {
		e.Problems = append(e.Problems, p.String())
	}
	return e
}

// problem is one thing wrong at key, which came from source (a file, an
// environment variable, or "" when unknown).
type problem struct{ source, key, msg string }

// String formats p as "SOURCE: KEY: MSG", leaving out what is empty.
func (p problem) String() string {
	var parts []string
	for _, s := range []string{p.source, p.key, p.msg} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, ": ")
}

// problems checks every rule; this is the one place each rule lives.
func (c *Config) problems() []problem {
	var ps []problem
	add := func(key, format string, args ...any) {
		ps = append(ps, problem{key: key, msg: fmt.Sprintf(format, args...)})
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			add(key, "must be positive, got %v", d)
		}
	}
	address := func(key, addr string, needHost bool) {
		if msg := checkAddress(addr, needHost); msg != "" {
			add(key, "%s", msg)
		}
	}
	oneOf := func(key, value string, valid []string) {
		if !slices.Contains(valid, value) {
			add(key, "unknown value %q (want one of %s)", value, strings.Join(valid, ", "))
		}
	}

	positive("runtime.drain_timeout_millis", c.Runtime.DrainTimeout)
	positive("runtime.config_watch_interval_millis", c.Runtime.ConfigWatchInterval)

	address("proxy.listen_address", c.Proxy.ListenAddress, false)
	if _, port, err := net.SplitHostPort(c.Proxy.ListenAddress); err == nil && port == "0" && c.Proxy.ReusePort {
		add("proxy.reuse_port", "needs a fixed port in proxy.listen_address, not 0: a second balancer must find the same address")
	}
	if c.Proxy.MaxConnections < 0 {
		add("proxy.max_connections", "must not be negative (0 means unlimited), got %d", c.Proxy.MaxConnections)
	}
	positive("proxy.connect_timeout", c.Proxy.ConnectTimeout)
	if r := c.Proxy.Retries; r != nil && len(c.Backends) > 0 && (*r < 0 || *r > len(c.Backends)-1) {
		add("proxy.retries", "must be 0..%d (one less than the number of backends), got %d", len(c.Backends)-1, *r)
	}
	if c.Proxy.IdleTimeout < 0 {
		add("proxy.idle_timeout", "must not be negative (0 disables it), got %v", c.Proxy.IdleTimeout)
	}
	if c.Proxy.EventLoops < 0 || c.Proxy.EventLoops > maxEventLoops {
		add("proxy.event_loops", "must be 0..%d (0 picks one per two CPUs), got %d", maxEventLoops, c.Proxy.EventLoops)
	}

	oneOf("strategy", c.Strategy, strategy.Names())

	if len(c.Backends) == 0 && !c.Discovery.Etcd.Enabled() {
		add("backends", "at least one backend is required (the file's backends list or LEMONADE_LB_BACKEND_ADDRESSES), unless discovery.etcd.endpoints is set")
	}
	ids, names, addrs := map[int]int{}, map[string]int{}, map[string]int{}
	for i, b := range c.Backends {
		key := fmt.Sprintf("backends[%d]", i)
		if b.ID < 0 {
			add(key+".id", "must not be negative, got %d", b.ID)
		}
		j, dupID := ids[b.ID]
		if dupID {
			add(key+".id", "%d is also the id of backends[%d]", b.ID, j)
		}
		ids[b.ID] = i
		// A duplicate id also duplicates a name derived from it: report it once.
		if j, dup := names[b.Name]; dup && !dupID && b.Name != "" {
			add(key+".name", "%q is also the name of backends[%d]", b.Name, j)
		}
		names[b.Name] = i
		address(key+".address", b.Address, true)
		if j, dup := addrs[strings.ToLower(b.Address)]; dup {
			add(key+".address", "%q is also the address of backends[%d]", b.Address, j)
		}
		addrs[strings.ToLower(b.Address)] = i
		if b.Weight < MinWeight || b.Weight > MaxWeight {
			add(key+".weight", "must be %d..%d, got %d", MinWeight, MaxWeight, b.Weight)
		}
	}

	oneOf("health.kind", c.Health.Kind, HealthKinds)
	if !strings.HasPrefix(c.Health.Path, "/") {
		add("health.path", "must start with \"/\", got %q", c.Health.Path)
	}
	positive("health.interval", c.Health.Interval)
	positive("health.timeout", c.Health.Timeout)
	if c.Health.Rise < 1 {
		add("health.rise", "must be at least 1, got %d", c.Health.Rise)
	}
	if c.Health.Fall < 1 {
		add("health.fall", "must be at least 1, got %d", c.Health.Fall)
	}
	passive := c.Health.Passive
	if passive.MaxFails < 0 || passive.MaxFails > backend.MaxPassiveFails {
		add("health.passive.max_fails", "must be 0..%d (0 never marks a backend down), got %d", backend.MaxPassiveFails, passive.MaxFails)
	}
	switch {
	case passive.FailDuration < 0:
		add("health.passive.fail_duration", "must not be negative, got %v", passive.FailDuration)
	case passive.FailDuration == 0 && passive.MaxFails > 0:
		add("health.passive.fail_duration", "must be positive when health.passive.max_fails is %d, got %v", passive.MaxFails, passive.FailDuration)
	}

	etcd := c.Discovery.Etcd
	for i, ep := range etcd.Endpoints {
		address(fmt.Sprintf("discovery.etcd.endpoints[%d]", i), ep, true)
	}
	if msg := checkPrefix(etcd.Prefix); msg != "" {
		add("discovery.etcd.prefix", "%s", msg)
	}
	if (etcd.Username == "") != (etcd.Password == "") {
		add("discovery.etcd.username", "set both discovery.etcd.username and discovery.etcd.password, or neither")
	}
	positive("discovery.etcd.dial_timeout", etcd.DialTimeout)
	if (etcd.TLS.CertFile == "") != (etcd.TLS.KeyFile == "") {
		add("discovery.etcd.tls.cert_file", "set both discovery.etcd.tls.cert_file and key_file, or neither")
	}
	if !etcd.Enabled() && (etcd.Username != "" || etcd.TLS.Enabled()) {
		add("discovery.etcd.endpoints", "required when other discovery.etcd keys are set")
	}

	positive("metrics.interval", c.Metrics.Interval)
	positive("metrics.timeout", c.Metrics.Timeout)

	ps = append(ps, settingProblems("adaptive", c.Adaptive.Validate())...)

	if c.Admin.ListenAddress != "" {
		address("admin.listen_address", c.Admin.ListenAddress, false)
		// Port 0 binds a free port for each: no clash.
		if c.Admin.ListenAddress == c.Proxy.ListenAddress && !strings.HasSuffix(c.Admin.ListenAddress, ":0") {
			add("admin.listen_address", "%q is also proxy.listen_address", c.Admin.ListenAddress)
		}
		// The admin API can drain backends and replace the config: off this
		// host it must not be open to anyone who can reach the port.
		if c.Admin.Token == "" && checkAddress(c.Admin.ListenAddress, false) == "" && !IsLoopback(c.Admin.ListenAddress) {
			add("admin.listen_address", "%q is not a loopback address and admin.token is not set: set admin.token (LEMONADE_LB_ADMIN_TOKEN) or listen on 127.0.0.1", c.Admin.ListenAddress)
		}
	}
	if t := c.Admin.Token; t != "" && strings.IndexFunc(t, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
		// Never echo the secret: say what is wrong, not what it is.
		add("admin.token", "must be printable ASCII without spaces (it is sent in an HTTP header)")
	}

	oneOf("access_log.format", c.AccessLog.Format, accesslog.Formats)
	if p := c.AccessLog.Path; p != "" && p != accesslog.Stdout {
		if st, err := os.Stat(filepath.Dir(p)); errors.Is(err, os.ErrNotExist) || err == nil && !st.IsDir() {
			add("access_log.path", "%q: directory %q does not exist", p, filepath.Dir(p))
		} else if err != nil {
			add("access_log.path", "%q: %v", p, err)
		} else if st, err := os.Stat(p); err == nil && st.IsDir() {
			add("access_log.path", "%q is a directory", p)
		}
	}

	oneOf("otlp_protocol", c.OTLPProtocol, OTLPProtocols)
	if c.OTLPEndpoint != "" && slices.Contains(OTLPProtocols, c.OTLPProtocol) {
		if _, err := endpoint.Parse(c.OTLPEndpoint, c.OTLPProtocol); err != nil {
			add("otlp_endpoint", "%q: %v", c.OTLPEndpoint, err)
		}
	}
	return ps
}

// settingProblems turns the *strategy.SettingError values joined in err into
// problems at keys under section.
func settingProblems(section string, err error) []problem {
	if err == nil {
		return nil
	}
	errs := []error{err}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		errs = joined.Unwrap()
	}
	var ps []problem
	for _, e := range errs {
		key := section
		var se *strategy.SettingError
		if errors.As(e, &se) {
			if se.Key != "" {
				key += "." + se.Key
			}
			e = errors.New(se.Msg)
		}
		ps = append(ps, problem{key: key, msg: e.Error()})
	}
	return ps
}

// checkAddress says what is wrong with a host:port address, or returns "".
// The port must be a number 1..65535; the host an IP address or a hostname.
// A listen address (needHost false) may have an empty host (all interfaces)
// and port 0 (any free port, as tests and scripts use).
func checkAddress(addr string, needHost bool) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("%q is not HOST:PORT", addr)
	}
	minPort := 1
	if !needHost {
		minPort = 0
	}
	if n, err := strconv.Atoi(port); err != nil || n < minPort || n > 65535 || strings.TrimLeft(port, "0123456789") != "" {
		return fmt.Sprintf("%q: port must be a number %d..65535", addr, minPort)
	}
	switch {
	case host == "" && needHost:
		return fmt.Sprintf("%q: host is empty", addr)
	case host == "":
		return ""
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	if !isHostname(host) {
		return fmt.Sprintf("%q: %q is neither an IP address nor a hostname", addr, host)
	}
	return ""
}

// IsLoopback reports whether the host of the HOST:PORT address is a loopback
// address (127.0.0.0/8, ::1) or "localhost". An empty host (every interface)
// and other host names are not: what they reach is not known here.
func IsLoopback(address string) bool {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return false
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// isHostname reports whether s is a plausible DNS name: dot-separated labels
// of letters, digits, '-' and '_', the last one not all digits (that would be
// a mistyped IPv4 address).
func isHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, label := range labels {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return strings.Trim(labels[len(labels)-1], "0123456789") != ""
}

// checkPrefix says what is wrong with an etcd key prefix, or "".
func checkPrefix(p string) string {
	switch {
	case !strings.HasPrefix(p, "/"):
		return fmt.Sprintf("must start with \"/\", got %q", p)
	case len(p) > 1 && strings.HasSuffix(p, "/"):
		return fmt.Sprintf("must not end with \"/\", got %q", p)
	case strings.Contains(p, "//"):
		return fmt.Sprintf("must not hold an empty segment (\"//\"), got %q", p)
	case p == "/":
		return "must name a directory below \"/\", such as \"/lemonade\""
	}
	return ""
}
