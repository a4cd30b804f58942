package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lemonade-lb/lemonade/fleet"
	"github.com/lemonade-lb/lemonade/loadbalancer"
	"github.com/lemonade-lb/lemonade/loadbalancer/admin"
	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

// balancerFleet is a balancer's etcd source: the client, the watcher of its
// pool, and the fleet's part of the start config.
type balancerFleet struct {
	cli   *clientv3.Client
	w     *fleet.Watcher
	start config.Fleet
}

// errNoBackends is the start's failure with no etcd and no static backend.
var errNoBackends = errors.New("etcd cannot be reached and the config file lists no static backend: nothing to serve")

// startBalancerFleet dials etcd and reads the pool once, waiting up to
// discovery.etcd.dial_timeout. Without an answer it goes on with the file's
// static backends (logged; the watcher keeps trying and resyncs when etcd
// answers), or fails when there are none.
func startBalancerFleet(log *slog.Logger, cfg *config.Config) (*balancerFleet, error) {
	e := cfg.Discovery.Etcd
	cli, err := fleet.Dial(e)
	if err != nil {
		return nil, fmt.Errorf("discovery.etcd: %w", err)
	}
	w, err := fleet.NewWatcher(cli, fleet.Keys{Prefix: e.Prefix}, fleet.DefaultPool, log)
	if err != nil {
		cli.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.DialTimeout)
	defer cancel()
	start, err := w.Sync(ctx)
	switch {
	case err == nil:
		log.Info("fleet read", "etcd", e.Endpoints, "prefix", e.Prefix, "backends", len(start.Backends), "shared_settings", start.Settings != nil)
	case len(cfg.Backends) > 0:
		log.Warn("etcd cannot be reached: starting on the config file's static backends; the fleet's join when it answers",
			"etcd", e.Endpoints, "waited", e.DialTimeout, "static_backends", len(cfg.Backends), "error", err)
		start = config.Fleet{Name: w.SettingsName()}
	default:
		cli.Close()
		return nil, fmt.Errorf("%w (discovery.etcd.endpoints %v, waited %v: %v)", errNoBackends, e.Endpoints, e.DialTimeout, err)
	}
	return &balancerFleet{cli: cli, w: w, start: start}, nil
}

// registerBalancer lists the balancer listening on listen in the fleet,
// with its admin API's URL ("" for none), under listen@host-pid.
func (f *balancerFleet) registerBalancer(log *slog.Logger, e config.Etcd, listen, adminURL string) (*fleet.Registrar, error) {
	host, err := os.Hostname()
	if err != nil {
		host = "localhost"
	}
	// The process id too: during an upgrade two balancers share listen@host.
	return fleet.RegisterBalancer(f.cli, fleet.Keys{Prefix: e.Prefix}, fmt.Sprintf("%s@%s-%d", listen, host, os.Getpid()),
		fleet.Balancer{Listen: listen, Admin: adminURL}, fleet.DefaultTTL, time.Second, log)
}

// startConfig is the start config with the fleet's part. Shared settings
// that do not build are logged and left out (the start goes on with the
// file's, as a rejected change would), so only the file's own problems
// stop the start.
func (f *balancerFleet) startConfig(log *slog.Logger, path string, file []byte) (*config.Config, error) {
	cfg, dropped, err := config.LoadDataWith(path, file, f.start)
	if err != nil && f.start.Settings != nil {
		log.Error("the fleet's shared settings are rejected; starting on the file's", "error", err)
		f.start.Settings = nil
		cfg, dropped, err = config.LoadDataWith(path, file, f.start)
	}
	for _, d := range dropped {
		log.Warn("discovered backend left out: a backend of the file has its id, name or address", "name", d.Name, "address", d.Address)
	}
	return cfg, err
}

// workerRegistration registers a worker as a backend of pool in the fleet
// at e (from --register), under its service name, at address (advertise,
// or the listener's when it names a host).
func workerRegistration(log *slog.Logger, e config.Etcd, pool, name, advertise string, ln net.Listener, framework string) (*fleet.Registrar, *clientv3.Client, error) {
	addr := advertise
	if addr == "" {
		addr = ln.Addr().String()
		if host, _, _ := net.SplitHostPort(addr); net.ParseIP(host).IsUnspecified() {
			return nil, nil, usageError{fmt.Errorf("--register: the worker listens on %s, every interface: give the address the balancers connect to with --advertise HOST:PORT", addr)}
		}
	}
	cli, err := fleet.Dial(e)
	if err != nil {
		return nil, nil, fmt.Errorf("--register: %w", err)
	}
	reg, err := fleet.Register(cli, fleet.Keys{Prefix: e.Prefix}, pool, name,
		fleet.Registration{Address: addr, Framework: framework}, fleet.DefaultTTL, e.DialTimeout, log)
	if err != nil {
		cli.Close()
		return nil, nil, fmt.Errorf("--register: %w", err)
	}
	return reg, cli, nil
}

// fleetBalancer is a balancer of a fleet, as the admin API sees it: its
// overrides can be made fleet-wide (?scope=fleet).
type fleetBalancer struct {
	*loadbalancer.Balancer
	cli  *clientv3.Client
	keys fleet.Keys
}

var _ admin.FleetController = fleetBalancer{}

// SetFleetOverride implements admin.FleetController.
func (f fleetBalancer) SetFleetOverride(ctx context.Context, name, action string, weight int) error {
	return fleet.SetOverride(ctx, f.cli, f.keys, fleet.DefaultPool, name, func(o *fleet.Override) {
		switch action {
		case admin.ActionDrain:
			o.State = loadbalancer.OverrideDrain
		case admin.ActionDisable:
			o.State = loadbalancer.OverrideDisable
		case admin.ActionWeight:
			o.Weight = weight
		case admin.ActionEnable:
			*o = fleet.Override{}
		}
	})
}

// deregisterGrace is how long a worker goes on serving after it left the
// pool: time for the balancers' watches to see it go and drain it, so no
// new connection meets a closed port.
const deregisterGrace = time.Second
