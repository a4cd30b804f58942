package config

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/lemonade-lb/lemonade/configfile"
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

// decode overlays v's settings on c and returns every problem, each from
// file: configfile.Decode, with the per-backend defaults laid down first.
func decode(v *viper.Viper, c *Config, file string) []problem {
	// Decoding into an existing slice keeps its elements.
	if list, ok := v.Get("backends").([]any); ok {
		c.Backends = make([]Backend, len(list))
		for i := range c.Backends {
			c.Backends[i] = defaultBackend(i)
		}
	}
	var de *configfile.DecodeError
	if err := configfile.Decode(v, c); !errors.As(err, &de) {
		return nil // Decode returns nil or a *DecodeError
	}
	ps := make([]problem, len(de.Problems))
	for i, p := range de.Problems {
		ps[i] = problem{file, p.Key, p.Msg}
	}
	return ps
}
