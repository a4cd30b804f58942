package config

import (
	"errors"
	"fmt"
	"maps"
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
	c, _, err := load(path, Fleet{}, os.LookupEnv)
	return c, err
}

// Parse is Load for a file already in memory, without the environment: data
// is in format ("yaml", "json" or "toml") and name stands for the file in
// error messages.
func Parse(data []byte, format, name string) (*Config, error) {
	v := viper.New()
	if err := configfile.ReadBytes(v, name, format, data); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	c, _, err := build([]layer{{v, name}}, nil, noEnv)
	return c, err
}

func noEnv(string) (string, bool) { return "", false }

// Fleet is what the fleet adds to a config file (the etcd source: package
// fleet): shared settings over the file's keys, and discovered backends
// beside the file's.
type Fleet struct {
	// Name stands for the fleet's settings in errors: "etcd /lemonade/config".
	Name string
	// Settings is a YAML or JSON document of settings laid over the file's
	// (nil for none). It may set any key but backends and discovery, which
	// stay each balancer's own.
	Settings []byte
	// Backends are the discovered backends, each already checked with
	// CheckBackend; they join the file's. One whose id, name or address is
	// also a file backend's is left out: the file's wins.
	Backends []Backend
}

// overlayForbidden lists the keys fleet settings may not set, and why.
var overlayForbidden = map[string]string{
	"backends":  "each balancer's file lists its static backends; others register under PREFIX/pools/",
	"discovery": "where a balancer finds the fleet is its own setting, in its file",
}

// LoadWith is Load with the fleet's part: the defaults, then the file, then
// the fleet's settings, then the environment; the discovered backends join
// the result. It returns, beside the config, the discovered backends it left
// out. A problem in the settings names fleet.Name and the key.
func LoadWith(path string, fleet Fleet) (*Config, []Backend, error) {
	return load(path, fleet, os.LookupEnv)
}

// CheckBackend says what is wrong with one backend found outside the file
// (a fleet registration), by the rules a file's backends follow; nil if
// nothing.
func CheckBackend(b Backend) error {
	c := Default()
	c.Backends = []Backend{b}
	c.resolve()
	return c.Validate()
}

// LoadDataWith is LoadWith for a file already read: data is the content of
// the file at path, whose extension gives the format. Nil data with a path
// reads the file.
func LoadDataWith(path string, data []byte, fleet Fleet) (*Config, []Backend, error) {
	return loadData(path, data, fleet, os.LookupEnv)
}

// load is LoadWith with the environment lookup passed in, for tests.
func load(path string, fleet Fleet, lookupEnv func(string) (string, bool)) (*Config, []Backend, error) {
	return loadData(path, nil, fleet, lookupEnv)
}

func loadData(path string, data []byte, fleet Fleet, lookupEnv func(string) (string, bool)) (*Config, []Backend, error) {
	var layers []layer
	if path != "" {
		v := viper.New()
		var err error
		if data == nil {
			err = configfile.Read(v, path)
		} else {
			var format string
			if format, err = configfile.Format(path); err == nil {
				err = configfile.ReadBytes(v, path, format, data)
			}
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		layers = append(layers, layer{v, path})
	}
	if fleet.Settings != nil {
		v := viper.New()
		if err := configfile.ReadBytes(v, fleet.Name, "yaml", fleet.Settings); err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		layers = append(layers, layer{v, fleet.Name})
	}
	return build(layers, fleet.Backends, lookupEnv)
}

// layer is one source of settings: a file or an overlay, read into v.
type layer struct {
	v    *viper.Viper
	name string
}

// build layers defaults, then each layer in order, then the environment,
// resolves what depends on other values, and validates.
func build(layers []layer, discovered []Backend, lookupEnv func(string) (string, bool)) (*Config, []Backend, error) {
	c := Default()
	var ps []problem
	from := map[string]string{} // key → the layer or variable that set it last
	file := ""
	for i, l := range layers {
		if i == 0 {
			file = l.name
		} else {
			forbidden := false
			for key, why := range overlayForbidden {
				if l.v.IsSet(key) {
					ps = append(ps, problem{l.name, key, "not allowed here: " + why})
					forbidden = true
				}
			}
			if forbidden {
				continue
			}
		}
		ps = append(ps, decode(l.v, c, l.name)...)
		if i > 0 {
			for _, key := range l.v.AllKeys() {
				from[key] = l.name
			}
		}
	}
	fromEnv, envProblems := applyEnv(c, lookupEnv)
	ps = append(ps, envProblems...)
	maps.Copy(from, fromEnv)
	dropped := c.join(discovered)
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
		for key, src := range from {
			if under(p.key, key) {
				p.source = src
			}
		}
		ps = append(ps, p)
	}
	if len(ps) > 0 {
		return nil, nil, newValidationError(ps)
	}
	return c, dropped, nil
}

// join adds the discovered backends to c's, leaving out (and returning) each
// whose id, name or address one of c's has. The file's names are resolved
// first, so "backend-3" clashes with an unnamed file backend of id 3.
func (c *Config) join(discovered []Backend) (dropped []Backend) {
	ids, names, addrs := map[int]bool{}, map[string]bool{}, map[string]bool{}
	for _, b := range c.Backends {
		name := b.Name
		if name == "" {
			name = fmt.Sprintf("backend-%d", b.ID)
		}
		ids[b.ID], names[name], addrs[strings.ToLower(b.Address)] = true, true, true
	}
	for _, b := range discovered {
		if ids[b.ID] || names[b.Name] || addrs[strings.ToLower(b.Address)] {
			dropped = append(dropped, b)
			continue
		}
		ids[b.ID], names[b.Name], addrs[strings.ToLower(b.Address)] = true, true, true
		c.Backends = append(c.Backends, b)
	}
	return dropped
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
