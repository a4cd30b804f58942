package main

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/lemonade-lb/lemonade/configfile"
	"github.com/lemonade-lb/lemonade/loadbalancer"
	"github.com/lemonade-lb/lemonade/loadbalancer/admin"
	"github.com/lemonade-lb/lemonade/loadbalancer/config"
	"github.com/lemonade-lb/lemonade/service"
)

// DemoCmd runs the whole system in one process: a worker of every framework,
// the balancer in front of them and the admin listener.
type DemoCmd struct {
	Strategy   string `default:"${default_strategy}" enum:"${strategies}" help:"Balancing strategy: ${enum}."`
	Delay      string `short:"d" default:"20" help:"Work delay of every worker: integer milliseconds or a duration." placeholder:"MS"`
	Listen     string `default:"127.0.0.1:50501" help:"Balancer listen address." placeholder:"ADDR"`
	Admin      string `default:"127.0.0.1:50500" help:"Admin listen address (/metrics, /status); empty to disable." placeholder:"ADDR"`
	WorkerHost string `default:"127.0.0.1" help:"Host the workers listen on."`
	WorkerPort int    `default:"50510" help:"Port of the first worker; the next ones are 10 apart (50510, 50520, …)."`
}

// Run implements the command.
func (c *DemoCmd) Run(g *Globals) error {
	delay, err := configfile.ParseDuration(c.Delay)
	if err != nil {
		return usageError{fmt.Errorf("--delay: %w", err)}
	}
	log, err := g.Logger()
	if err != nil {
		return err
	}

	// Bind every worker port first, so a taken port is reported before
	// anything runs.
	cfg := config.Default()
	cfg.Proxy.ListenAddress = c.Listen
	cfg.Strategy = c.Strategy
	cfg.Admin.ListenAddress = c.Admin
	cfg.Health.Interval = time.Second // the demo shows a killed worker leave and come back quickly
	listeners := make([]net.Listener, len(frameworkNames))
	closeAll := func() {
		for _, ln := range listeners {
			if ln != nil {
				ln.Close()
			}
		}
	}
	for i, fw := range frameworkNames {
		addr := net.JoinHostPort(c.WorkerHost, fmt.Sprint(c.WorkerPort+10*i))
		ln, err := service.Listen(addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("worker %s: %w", fw, err)
		}
		listeners[i] = ln
		cfg.Backends = append(cfg.Backends, config.Backend{ID: i, Name: "worker-" + fw, Address: addr, Weight: 1})
	}
	retries := len(cfg.Backends) - 1
	cfg.Proxy.Retries = &retries
	if err := cfg.Validate(); err != nil {
		closeAll()
		return usageError{err}
	}

	ctx, stop := signalContext(log)
	defer stop()
	var workers sync.WaitGroup
	for i, fw := range frameworkNames {
		wc := service.Config{ListenAddress: listeners[i].Addr().String(), ServiceName: "worker-" + fw, WorkDelay: delay}
		workers.Add(1)
		go func() {
			defer workers.Done()
			if err := frameworks[fw](ctx, listeners[i], wc); err != nil {
				log.Error("worker stopped with an error", "framework", fw, "error", err)
			}
		}()
	}
	b, err := loadbalancer.Start(ctx, log, cfg)
	if err != nil {
		stop()
		workers.Wait()
		return err
	}
	var adminSrv *admin.Server
	if c.Admin != "" {
		if adminSrv, err = admin.Start(ctx, log, c.Admin, b); err != nil {
			stop()
			<-b.Done()
			workers.Wait()
			return err
		}
	}
	c.printTable(g, b.Addr().String(), adminSrv, cfg)
	<-b.Done()
	workers.Wait()
	if adminSrv != nil {
		adminSrv.Wait()
	}
	return nil
}

func (c *DemoCmd) printTable(g *Globals, lbAddr string, adminSrv *admin.Server, cfg *config.Config) {
	w := tabwriter.NewWriter(g.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "Lemonade demo: Ctrl-C stops everything.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "  WHAT\tWHERE\tDETAILS")
	fmt.Fprintf(w, "  load balancer\t%s\tstrategy %s\n", lbAddr, cfg.Strategy)
	if adminSrv != nil {
		fmt.Fprintf(w, "  admin\thttp://%s\t/metrics /status /health\n", adminSrv.Addr())
	}
	for i, b := range cfg.Backends {
		fmt.Fprintf(w, "  %s\t%s\tframework %s, delay %sms\n", b.Name, b.Address, frameworkNames[i], c.Delay)
	}
	w.Flush()
	fmt.Fprintf(g.stdout, `
Try:
  curl http://%[1]s/health
  curl http://%[1]s/work
  for i in $(seq 1 10); do curl -s http://%[1]s/work; echo; done
  go run ./lemonade bench http://%[1]s/work -c 20 -d 5s
`, lbAddr)
	if adminSrv != nil {
		fmt.Fprintf(g.stdout, "  curl http://%s/status\n", adminSrv.Addr())
	}
	fmt.Fprintln(g.stdout, strings.Repeat("-", 60))
}
