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
// the whole is rebuilt, validated and applied: all of it or nothing. A part
// that does not build is rejected, logged and counted, the running config
// stays, and the last good part is kept for the next rebuild, so a bad file
// does not stop the fleet's changes, nor a bad fleet setting the file's.
type Sources struct {
	b    *Balancer
	path string // "" for no file: the environment and the defaults

	mu    sync.Mutex // serializes rebuilds; guards the parts below
	file  []byte     // the file's last content that built; nil before the first
	fleet config.Fleet
}

// NewSources returns the sources of b's config: the file at path ("" for
// none) and the fleet's part, as they built b's config at start. file is the
// content read then (nil: read it when needed).
func NewSources(b *Balancer, path string, file []byte, fleet config.Fleet) *Sources {
	return &Sources{b: b, path: path, file: file, fleet: fleet}
}

// ReloadFile rebuilds with data as the file's content; with force it applies
// even when the result equals the running config (SIGHUP).
func (s *Sources) ReloadFile(data []byte, force bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rebuild(SourceFile, data, s.fleet, force)
}

// SetFleetSettings replaces the fleet's shared settings: doc (YAML or JSON,
// nil for none), named name in errors.
func (s *Sources) SetFleetSettings(name string, doc []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.fleet
	next.Name, next.Settings = name, doc
	return s.rebuild(SourceFleet, s.file, next, false)
}

// SetFleetBackends replaces the fleet's discovered backends, each checked
// with config.CheckBackend.
func (s *Sources) SetFleetBackends(backends []config.Backend) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.fleet
	next.Backends = backends
	return s.rebuild(SourceFleet, s.file, next, false)
}

// rebuild builds the config from file and fleet, keeps them as the good
// parts if it builds, and applies it. s.mu is held.
func (s *Sources) rebuild(source string, file []byte, fleet config.Fleet, force bool) error {
	if s.path != "" && file == nil {
		data, err := os.ReadFile(s.path)
		if err != nil {
			s.b.reloadFailed(source, err)
			s.b.log.Error("config rebuild rejected: the file cannot be read; keeping the running config", "source", source, "file", s.path, "error", err)
			return err
		}
		file = data
	}
	cfg, dropped, err := config.LoadDataWith(s.path, file, fleet)
	if err != nil {
		s.b.reloadFailed(source, err)
		s.b.log.Error("config rebuild rejected; keeping the running config", "source", source, "error", err)
		return err
	}
	for _, d := range dropped {
		s.b.log.Warn("discovered backend left out: a backend of the file has its id, name or address", "name", d.Name, "address", d.Address, "id", d.ID)
	}
	if !force && reflect.DeepEqual(cfg, s.b.Config()) {
		s.file, s.fleet = file, fleet
		return nil // only comments or layout changed, or nothing that matters
	}
	if _, err := s.b.ApplyFrom(source, cfg); err != nil {
		s.b.log.Error("config rebuild failed; keeping the running config", "source", source, "error", err)
		return err
	}
	s.file, s.fleet = file, fleet
	return nil
}
