package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/lemonade-lb/lemonade/fleet"
	"github.com/lemonade-lb/lemonade/loadbalancer"
	"github.com/lemonade-lb/lemonade/loadbalancer/accesslog"
	"github.com/lemonade-lb/lemonade/loadbalancer/admin"
	"github.com/lemonade-lb/lemonade/loadbalancer/config"
	"github.com/lemonade-lb/lemonade/observability/otel"
)

// LoadBalancerCmd runs the balancer.
type LoadBalancerCmd struct {
	Config string `short:"c" help:"Config file (.yaml, .yml, .json or .toml). Without it the LEMONADE_LB_* environment variables and the defaults make the config." placeholder:"FILE"`
	Check  bool   `help:"Validate the config (file and environment) and exit."`
}

// Run implements the command.
func (c *LoadBalancerCmd) Run(g *Globals) error {
	cfg, err := config.Load(c.Config)
	if err != nil {
		return usageError{err}
	}
	if c.Check {
		source := c.Config
		if source == "" {
			source = "environment"
		}
		fmt.Fprintf(g.stdout, "%s: OK (%d backends, strategy %s, listen %s)\n", source, len(cfg.Backends), cfg.Strategy, cfg.Proxy.ListenAddress)
		return nil
	}
	log, err := g.Logger()
	if err != nil {
		return err
	}
	// Before anything starts: a bad OTLP setting is a usage error. Without
	// otlp_endpoint, tel is nil and nothing is built.
	version, _ := buildVersion()
	tel, err := otel.Setup(context.Background(), otel.Settings{
		Endpoint:          cfg.OTLPEndpoint,
		Protocol:          cfg.OTLPProtocol,
		ServiceName:       "lemonade-lb",
		ServiceVersion:    version,
		ServiceInstanceID: instanceID(cfg.Proxy.ListenAddress),
		Interval:          cfg.Metrics.Interval,
		Timeout:           cfg.Metrics.Timeout,
		Logger:            log,
	})
	if err != nil {
		return usageError{fmt.Errorf("otlp_endpoint %q (otlp_protocol %s): %w", cfg.OTLPEndpoint, cfg.OTLPProtocol, err)}
	}
	// Deferred first, so it runs last: the final export sees every
	// connection closed by the drain.
	defer flushOTLP(log, tel, cfg.Metrics.Timeout)

	// The fleet's part, before anything binds: etcd unreachable with no
	// static backend is an error at the start.
	var fl *balancerFleet
	var file []byte
	if cfg.Discovery.Etcd.Enabled() {
		if c.Config != "" {
			if file, err = os.ReadFile(c.Config); err != nil {
				return usageError{err}
			}
		}
		if fl, err = startBalancerFleet(log, cfg); err != nil {
			return err
		}
		defer fl.cli.Close()
		if cfg, err = fl.startConfig(log, c.Config, file); err != nil {
			return usageError{err}
		}
	}

	ctx, stop := signalContext(log)
	defer stop()
	// Before the start: SIGUSR1's default action ends the process, and a
	// log rotation may signal a balancer that is still starting.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)

	b, err := loadbalancer.Start(ctx, log, cfg)
	if err != nil {
		return err
	}
	if tel != nil {
		if err := balancerInstruments(tel.Meter(), b); err != nil {
			stop()
			<-b.Done()
			return fmt.Errorf("OpenTelemetry instruments: %w", err)
		}
		log.Info("exporting metrics over OTLP", "endpoint", cfg.OTLPEndpoint, "protocol", cfg.OTLPProtocol, "interval", cfg.Metrics.Interval)
	}
	adminURL := ""
	if cfg.Admin.ListenAddress != "" {
		var src admin.Source = b
		if fl != nil {
			src = fleetBalancer{Balancer: b, cli: fl.cli, keys: fleet.Keys{Prefix: cfg.Discovery.Etcd.Prefix}}
		}
		srv, err := admin.Start(ctx, log, cfg.Admin.ListenAddress, src)
		if err != nil {
			stop()
			<-b.Done()
			return err
		}
		defer srv.Wait()
		adminURL = "http://" + srv.Addr().String()
	}
	if fl != nil {
		// Listed for lemonade ctl fleet while it runs.
		reg, err := fl.registerBalancer(log, cfg.Discovery.Etcd, b.Addr().String(), adminURL)
		if err != nil {
			stop()
			<-b.Done()
			return err
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = reg.Close(ctx) // else its lease expires
		}()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reopenAccessLogOn(log, b, usr1)
	var fleetPart config.Fleet
	if fl != nil {
		fleetPart = fl.start
	}
	sources := loadbalancer.NewSources(b, c.Config, file, fleetPart)
	if fl != nil {
		go fl.w.Run(ctx, fleet.NewBalancerSink(sources, b, log))
	}
	if c.Config != "" {
		go sources.WatchFile(ctx, hup)
	} else {
		go func() {
			for {
				select {
				case <-hup:
					log.Warn("SIGHUP ignored: the config came from the environment, there is no file to reload")
				case <-b.Done():
					return
				}
			}
		}()
	}
	<-b.Done()
	return nil
}

// reopenAccessLogOn opens the access log's file again at each signal on sig
// (SIGUSR1, after a log rotation), until b stops.
func reopenAccessLogOn(log *slog.Logger, b *loadbalancer.Balancer, sig <-chan os.Signal) {
	for {
		select {
		case <-sig:
			switch err := b.ReopenAccessLog(); {
			case errors.Is(err, accesslog.ErrOff):
				log.Info("SIGUSR1 ignored: no access_log.path")
			case err != nil:
				log.Error("SIGUSR1: cannot reopen the access log, still writing to the old file", "error", err)
			default:
				log.Info("SIGUSR1: access log reopened", "path", b.Config().AccessLog.Path)
			}
		case <-b.Done():
			return
		}
	}
}
