package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/lemonade-lb/lemonade/loadbalancer"
	"github.com/lemonade-lb/lemonade/loadbalancer/admin"
	"github.com/lemonade-lb/lemonade/loadbalancer/config"
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
	ctx, stop := signalContext(log)
	defer stop()

	b, err := loadbalancer.Start(ctx, log, cfg)
	if err != nil {
		return err
	}
	if cfg.Admin.ListenAddress != "" {
		srv, err := admin.Start(ctx, log, cfg.Admin.ListenAddress, b)
		if err != nil {
			stop()
			<-b.Done()
			return err
		}
		defer srv.Wait()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if c.Config != "" {
		go loadbalancer.WatchFile(ctx, b, c.Config, hup)
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
