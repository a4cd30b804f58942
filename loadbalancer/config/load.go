package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/lemonade-lb/lemonade/observability/configfile"
	"github.com/spf13/viper"
)

// Load reads the file at path (YAML, JSON or TOML, chosen by extension),
// applies the LEMONADE_LB_* environment variables over it, fills in the
// defaults and validates the result. With path "" the environment and the
// defaults alone make the config.
//
// Every problem is reported at once, each naming the file and key or the
// environment variable it came from; errors.Is(err, ErrInvalid) holds for
// any error Load returns. A file that cannot be read or decoded at all (a
// directory, not UTF-8, no settings, a key set twice, a syntax error...) is
// one *configfile.Error instead, naming the file and, where known, the line
// and key; errors.Is tells its kind (configfile.ErrDuplicateKey,
// fs.ErrNotExist...).
func Load(path string) (*Config, error) {
	return load(path, os.LookupEnv)
}

// Parse is Load for a file already in memory, without the environment: data
// is in format ("yaml", "json" or "toml") and name stands for the file in
// error messages.
func Parse(data []byte, format, name string) (*Config, error) {
	v := viper.New()
	if err := configfile.ReadBytes(v, name, format, data); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return build(v, name, noEnv)
}

func noEnv(string) (string, bool) { return "", false }

// load is Load with the environment lookup passed in, for tests.
func load(path string, lookupEnv func(string) (string, bool)) (*Config, error) {
	if path == "" {
		return build(nil, "", lookupEnv)
	}
	v := viper.New()
	if err := configfile.Read(v, path); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return build(v, path, lookupEnv)
}

// build layers defaults, then the file in v (nil for none), then the
// environment, resolves what depends on other values, and validates.
func build(v *viper.Viper, file string, lookupEnv func(string) (string, bool)) (*Config, error) {
	c := Default()
	var ps []problem
	if v != nil {
		ps = decode(v, c, file)
	}
	fromEnv, envProblems := applyEnv(c, lookupEnv)
	ps = append(ps, envProblems...)
	c.resolve()

	// A set, not a scan of ps per problem: a file of garbage can make
	// hundreds of thousands of each.
	reported := make(map[string]bool, len(ps))
	for _, q := range ps {
		reported[q.key] = true
	}
	for _, p := range c.problems() {
		if reportedUnder(p.key, reported) {
			continue // a value that did not decode or parse: already reported
		}
		p.source = file
		for key, src := range fromEnv {
			if under(p.key, key) {
				p.source = src
			}
		}
		ps = append(ps, p)
	}
	if len(ps) > 0 {
		return nil, newValidationError(ps)
	}
	return c, nil
}

// under reports whether key is parent or inside it: "backends[1].weight" is
// under "backends" and "backends[1]". Nothing is under "".
func under(key, parent string) bool {
	return parent != "" && strings.HasPrefix(key, parent) &&
		(len(key) == len(parent) || key[len(parent)] == '.' || key[len(parent)] == '[')
}

// reportedUnder reports whether key, or a key it is under, is in reported:
// it looks up "backends[1].weight", "backends[1]" and "backends".
func reportedUnder(key string, reported map[string]bool) bool {
	for ; key != ""; key = key[:max(0, strings.LastIndexAny(key, ".["))] {
		if reported[key] {
			return true
		}
	}
	return false
}

// decode overlays v's settings on c and returns every problem: unknown keys
// first, then values of the wrong type. It is configfile.Decode, except that
// it carries on past unknown keys so one run reports everything, and it is
// strict about types: no "true" for a number, no 1.5 for an integer.
func decode(v *viper.Viper, c *Config, file string) []problem {
	var ps []problem
	for _, key := range configfile.UnknownKeys(v.AllSettings(), reflect.TypeFor[Config](), "") {
		if k, err := strconv.Unquote(key); err == nil {
			key = k
		}
		ps = append(ps, problem{file, key, "unknown key"})
	}
	// Decoding into an existing slice keeps its elements, so the per-backend
	// defaults are laid down first.
	if list, ok := v.Get("backends").([]any); ok {
		c.Backends = make([]Backend, len(list))
		for i := range c.Backends {
			c.Backends[i] = defaultBackend(i)
		}
	}
	err := v.Unmarshal(c,
		viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(configfile.DurationHook(), wholeNumberHook)),
		func(dc *mapstructure.DecoderConfig) { dc.WeaklyTypedInput = false },
	)
	for _, p := range flatten(err) {
		p.source = file
		ps = append(ps, p)
	}
	return ps
}

// wholeNumberHook rejects numbers an int field cannot hold exactly, which
// mapstructure would otherwise truncate (JSON numbers arrive as float64).
func wholeNumberHook(_, to reflect.Type, data any) (any, error) {
	if to.Kind() != reflect.Int {
		return data, nil
	}
	switch n := data.(type) {
	case float64:
		if n != math.Trunc(n) || n < math.MinInt64 || n >= math.MaxInt64 {
			return nil, fmt.Errorf("want a whole number, got %v", n)
		}
	case uint64:
		if n > math.MaxInt64 {
			return nil, fmt.Errorf("%v is too large", n)
		}
	}
	return data, nil
}

// flatten lists one problem per field in a mapstructure error.
func flatten(err error) []problem {
	switch e := err.(type) {
	case nil:
		return nil
	case interface{ Unwrap() []error }:
		var ps []problem
		for _, inner := range e.Unwrap() {
			ps = append(ps, flatten(inner)...)
		}
		return ps
	case *mapstructure.DecodeError:
		if _, joined := e.Unwrap().(interface{ Unwrap() []error }); joined {
			return flatten(e.Unwrap())
		}
		msg := e.Unwrap().Error()
		var wrongType *mapstructure.UnconvertibleTypeError
		if errors.As(e, &wrongType) {
			msg += fmt.Sprintf(" (%v)", wrongType.Value)
		}
		return []problem{{key: e.Name(), msg: msg}}
	}
	// mapstructure wraps its list of errors in one "decoding failed" error.
	if inner := errors.Unwrap(err); inner != nil {
		return flatten(inner)
	}
	return []problem{{msg: err.Error()}}
}
