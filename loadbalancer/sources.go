package loadbalancer

import (
	"os"
	"reflect"
	"sync"

	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

// Sources builds the balancer's config from its sources and applies it: the
// config file (with the environment and the defaults), the fleet's shared
// settings over the file's keys, and the fleet's discovered backends beside
// the file's (config.LoadDataWith). Each source replaces its own part, and
// the whole is rebuilt, validated and applied: all of it or nothing.
//
// Sources keeps each source's latest part and its last applied one. A
// rebuild tries the latest of all; if that does not build, the part that
// changed with the others' last applied ones. A part that does not build
// either way is rejected, logged and counted, and the running config stays;
// it is tried again at the next change of any source, so a part rejected
// only in combination with another comes in once the other changes.
type Sources struct {
	b    *Balancer
	path string // "" for no file: the environment and the defaults

	// AfterApply, when set, runs after each config Sources applies (the
	// fleet's overrides are matched to the new backends there).
	AfterApply func()

	mu     sync.Mutex // serializes rebuilds; guards the parts below
	latest parts      // each source's latest
	good   parts      // what the running config was built from
}

// parts are what a config is built from.
type parts struct {
	file     []byte // the file's content; nil: read it
	settings []byte // the fleet's shared settings; nil: none
	name     string // stands for the settings in errors
	backends []config.Backend
}

// fleet is the fleet's part of p as config.LoadDataWith takes it.
func (p parts) fleet() config.Fleet {
	return config.Fleet{Name: p.name, Settings: p.settings, Backends: p.backends}
}

// Which part a rebuild is for.
const (
	partFile = iota
	partSettings
	partBackends
)

// NewSources returns the sources of b's config: the file at path ("" for
// none) and the fleet's part, as they built b's config at start. file is the
// content read then (nil: read it when needed).
func NewSources(b *Balancer, path string, file []byte, fleet config.Fleet) *Sources {
	p := parts{file: file, settings: fleet.Settings, name: fleet.Name, backends: fleet.Backends}
	return &Sources{b: b, path: path, latest: p, good: p}
}

// ReloadFile rebuilds with data as the file's content; with force it applies
// even when the result equals the running config (SIGHUP).
func (s *Sources) ReloadFile(data []byte, force bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latest.file = data
	return s.rebuild(SourceFile, partFile, force)
}

// SetFleetSettings replaces the fleet's shared settings: doc (YAML or JSON,
// nil for none), named name in errors.
func (s *Sources) SetFleetSettings(name string, doc []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latest.name, s.latest.settings = name, doc
	return s.rebuild(SourceFleet, partSettings, false)
}

// SetFleetBackends replaces the fleet's discovered backends, each checked
// with config.CheckBackend.
func (s *Sources) SetFleetBackends(backends []config.Backend) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latest.backends = backends
	return s.rebuild(SourceFleet, partBackends, false)
}

// rebuild builds and applies the config after part, from source, changed.
// s.mu is held.
func (s *Sources) rebuild(source string, part int, force bool) error {
	if s.path != "" && s.latest.file == nil {
		data, err := os.ReadFile(s.path)
		if err != nil {
			s.b.reloadFailed(source, err)
			s.b.log.Error("config rebuild rejected: the file cannot be read; keeping the running config", "source", source, "file", s.path, "error", err)
			return err
		}
		s.latest.file = data
		if s.good.file == nil {
			s.good.file = data
		}
	}
	use := s.latest
	cfg, dropped, err := config.LoadDataWith(s.path, use.file, use.fleet())
	if err != nil {
		// The changed part alone, over the others' last applied ones.
		use = s.good
		switch part {
		case partFile:
			use.file = s.latest.file
		case partSettings:
			use.settings, use.name = s.latest.settings, s.latest.name
		case partBackends:
			use.backends = s.latest.backends
		}
		var err2 error
		if cfg, dropped, err2 = config.LoadDataWith(s.path, use.file, use.fleet()); err2 != nil {
			s.b.reloadFailed(source, err)
			s.b.log.Error("config rebuild rejected; keeping the running config", "source", source, "error", err)
			return err
		}
	}
	for _, d := range dropped {
		s.b.log.Warn("discovered backend left out: a backend of the file has its id, name or address", "name", d.Name, "address", d.Address, "id", d.ID)
	}
	if force || !reflect.DeepEqual(cfg, s.b.Config()) {
		if _, err := s.b.ApplyFrom(source, cfg); err != nil {
			s.b.log.Error("config rebuild failed; keeping the running config", "source", source, "error", err)
			return err
		}
	}
	s.good = use
	if s.AfterApply != nil {
		s.AfterApply()
	}
	return nil
}
